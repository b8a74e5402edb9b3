"""Several models behind one server: which model serves each language pair, and the route of a request.

Each model keeps its own Service (batcher, workers, limits); the router only chooses. A model serves the pairs it
was trained on (a multilingual model's are recorded in its checkpoint; each is asked for with its target
language's token, `>>de<<`), or its one pair. The first model named that serves a pair serves it; a pair no model
serves but that English links (de->en by one, en->fr by another) is pivoted through English, as LibreTranslate
does, and the answer says so. A model whose source language is not recorded serves any source.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nmt.serve.service import RequestError, Service

PIVOT = "en"
ANY = "*"  # a model that does not record its source language


@dataclass(frozen=True)
class Leg:
    """One model's part of a route: its service and the token its texts start with (None: a model of one pair)."""

    model: str
    service: Service
    language: str | None


@dataclass(frozen=True)
class Route:
    source: str
    target: str
    legs: tuple[Leg, ...]  # one, or two through PIVOT

    @property
    def pivot(self) -> str | None:
        return PIVOT if len(self.legs) == 2 else None


def model_pairs(service: Service) -> list[tuple[str, str, str | None]]:
    """(source, target, token) of each pair a model's translator serves."""
    engine = service.translator
    language = engine.language
    if language.token is not None:  # --target-language: one output language for every text
        return [(engine.src_lang or ANY, language.token[2:-2], None)]
    if engine.pairs:
        return [(src, tgt, f">>{tgt}<<" if f">>{tgt}<<" in language.tokens else None) for src, tgt in engine.pairs]
    if language.tokens:  # an imported multilingual model: its tokens say its targets
        return [(engine.src_lang if engine.src_lang not in (None, "mul") else ANY, token[2:-2], token)
                for token in sorted(language.tokens)]
    return [(engine.src_lang or ANY, engine.tgt_lang or ANY, None)]


class Router:
    """The models in the order named, and the pairs each serves."""

    def __init__(self, models: list[tuple[str, Service]]):
        self.models = models
        self.direct: dict[tuple[str, str], Leg] = {}
        for name, service in models:
            for source, target, token in model_pairs(service):
                self.direct.setdefault((source, target), Leg(name, service, token))  # the first named serves it
        self.listed = self._languages()  # the models are fixed: every request routes against this

    @property
    def first(self) -> Service:
        """The first model's service: what the routes share (limits, key, metrics)."""
        return self.models[0][1]

    def _leg(self, source: str, target: str) -> Leg | None:
        return self.direct.get((source, target)) or self.direct.get((ANY, target)) or \
            self.direct.get((source, ANY)) or self.direct.get((ANY, ANY))

    def find(self, source: str, target: str) -> Route | None:
        if source == target:
            return None
        leg = self._leg(source, target)
        if leg is not None:
            return Route(source, target, (leg,))
        if PIVOT not in (source, target):
            first, second = self._leg(source, PIVOT), self._leg(PIVOT, target)
            if first is not None and second is not None:
                return Route(source, target, (first, second))
        return None

    def languages(self) -> dict[str, dict[str, str]]:
        return self.listed

    def _languages(self) -> dict[str, dict[str, str]]:
        """source -> {target: what serves it}, every pair a request can ask for (direct or through English); a
        model that records no source language is listed under `auto` (and one that records no languages at all,
        as auto -> auto)."""
        sources = sorted({source for source, _ in self.direct if source != ANY})
        sources += [ANY] if any(source == ANY for source, _ in self.direct) else []
        targets = sorted({target for _, target in self.direct if target != ANY})
        listed: dict[str, dict[str, str]] = {}
        for source in sources:
            for target in targets or [ANY]:
                route = self.find(source, target)
                if route is not None:
                    listed.setdefault("auto" if source == ANY else source, {})["auto" if target == ANY else target] = \
                        " + ".join(leg.model for leg in route.legs) + (f" (through {route.pivot})" if route.pivot else "")
        return listed

    def served(self) -> str:
        """The pairs a request may ask for, for a message: `de->en, en->de, en->fr`."""
        return ", ".join(f"{source}->{target}" for source, targets in self.languages().items() for target in targets)

    def route(self, source: str | None, target: str | None) -> tuple[Route, bool]:
        """The route of a request, and whether its source was chosen here (`auto` or none given: the one source
        that reaches the target, since the server detects no language); a 400 naming the pairs served where there
        is no route."""
        if not source and not target and len(self.models) == 1:  # one model, no pair named: its texts as they come
            name, service = self.models[0]  # (a multilingual model's may start with their token, >>de<<)
            return Route(ANY, ANY, (Leg(name, service, None),)), False
        listed = self.languages()
        pairs = [(s, t) for s, targets in listed.items() for t in targets]
        detected = not source or source == "auto"
        if detected:
            sources = sorted({s for s, t in pairs if s != "auto" and (not target or t == target)})
            if len(sources) > 1:
                raise RequestError(400, f"name the source language: this server translates {self.served()} and "
                                   "does not detect languages")
            source = sources[0] if sources else ANY
        if not target:
            targets = sorted({t for s, t in pairs if s == source})
            if len(targets) != 1:
                raise RequestError(400, f"name the target language: this server translates {self.served()}")
            target = targets[0]
        route = self.find(source, target)
        if route is None:
            raise RequestError(400, f"{'auto' if source == ANY else source}->{target} is not served: this server "
                               f"translates {self.served()}")
        return route, detected


async def translate_routed(request, route: Route, texts: list[str], text_format: str, split: bool,
                           beam: int | None = None, nbest: int | None = None, lenpen: float | None = None,
                           attention: bool = False, prefixes: list[str] | None = None,
                           constraints: list | None = None):
    """Texts along a route: by its one model, or through the pivot by two (the request's search options, prefixes
    and constraints apply to the last; attention, prefixes and constraints are refused on a pivot, whose words
    come from the English in between)."""
    if route.pivot and (attention or any(prefixes or []) or constraints):
        raise RequestError(400, f"{route.source}->{route.target} is translated through {route.pivot} by two models: "
                           "attention, prefix and constraints are not available for it")
    results = None
    for position, leg in enumerate(route.legs):
        last = position == len(route.legs) - 1
        options = leg.service.options(beam if last else None, nbest if last else None, lenpen if last else None,
                                      attention and last)
        options = dataclasses.replace(options, language=leg.language)
        source = route.source if position == 0 else route.pivot
        results = await leg.service.translate_texts(request, texts, text_format, split, options,
                                                    prefixes if last else None, constraints if last else None,
                                                    language=source if source != ANY else None)
        texts = [translations[0].text for translations in results]
    if route.pivot:
        route.legs[0].service.metrics.pivoted.labels(route.source, route.target, route.pivot).inc()
    return results
