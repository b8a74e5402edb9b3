"""Every field of both server APIs' request bodies, given hostile values, on top of a valid request.

The fields come from the request models (`nmt.serve.v1.TranslateBody`, `nmt.serve.libretranslate.TranslateRequest`),
so a new field is walked without anyone adding a case. Each value is sent as raw JSON (NaN and Infinity literals,
numbers past a float's range, integers of thousands of digits, lone surrogates, nesting thousands deep, megabyte
strings) and, for LibreTranslate, as a urlencoded and a multipart form too. Every answer must be a 2xx or a 4xx with a
JSON error, never a 5xx, and the server must go on answering.
"""

from __future__ import annotations

import json

import pytest

from test_serve import KEY, ServerProcess

httpx = pytest.importorskip("httpx")

# Raw JSON texts: what a hostile client can put where a field's value goes.
HOSTILE_JSON = ["null", "-1", "0", "1.5", "100000000000000000000000000000", "1e308", "-1e308", "1e400", "NaN",
                "Infinity", "-Infinity", "9" * 5000, '""', '" "', '"x"', '"\\ud800"', '"\\u0000"', "true", "[]",
                "[[]]", '[""]', '["\\ud800"]', "[1]", "[" * 5000 + "]" * 5000, '{"a": 1}', json.dumps("word " * 4000),
                json.dumps(["red dog"] * 3000)]
# Form values are text: what a form field can hold.
HOSTILE_FORM = ["", " ", "-1", "NaN", "Infinity", "1e400", "9" * 5000, "x", "\x00", "red dog" * 2000]
V1_BASE = {"text": "red dog"}
LT_BASE = {"q": "red dog", "source": "src", "target": "tgt", "api_key": KEY}


@pytest.fixture(scope="module")
def walk_server(trained_checkpoint):
    # --max-characters 1,000: every value either refused or decoded in well under --timeout on a loaded machine (a
    # 5,000-character text of one digit repeated decodes for tens of seconds on a busy CI worker: a 504, which the
    # walk would count)
    running = ServerProcess(trained_checkpoint, "--max-beam", "4", "--max-sentences", "50", "--timeout", "30",
                            "--max-characters", "1000", env={"NMT_API_KEY": KEY}, threads=2)
    yield running
    running.stop()


def with_field(base: dict, field: str, raw_value: str) -> bytes:
    """BASE as a JSON object with FIELD set to RAW_VALUE, a JSON text written as is."""
    others = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in base.items() if k != field)
    return ("{" + others + (", " if others else "") + f"{json.dumps(field)}: {raw_value}" + "}").encode()


def verdict(response: httpx.Response) -> str | None:
    """None for a 2xx, or a 4xx whose body is a JSON error; else what is wrong."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:200]!r}"
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            return f"{response.status_code} without a JSON body: {response.text[:200]!r}"
        if not (isinstance(body, dict) and ("error" in body or "detail" in body)):
            return f"{response.status_code} without an error message: {body!r}"
    return None


def body_cases():
    from nmt.serve.libretranslate import TranslateRequest
    from nmt.serve.v1 import TranslateBody

    for field in TranslateBody.model_fields:
        for value in HOSTILE_JSON:
            yield "v1", field, value, "/v1/translate", {"Authorization": f"Bearer {KEY}",
                                                        "Content-Type": "application/json"}, with_field(V1_BASE, field,
                                                                                                       value)
    for field in TranslateRequest.model_fields:
        for value in HOSTILE_JSON:
            yield "lt-json", field, value, "/translate", {"Content-Type": "application/json"}, with_field(
                LT_BASE, field, value)
        for value in HOSTILE_FORM:
            form = {**LT_BASE, field: value}
            yield "lt-form", field, value, "/translate", {}, form
            yield "lt-multipart", field, value, "/translate", {}, ("multipart", form)


def send(server, path: str, headers: dict, body) -> httpx.Response:
    if isinstance(body, tuple):  # multipart
        return httpx.post(server.url + path, files={k: (None, v) for k, v in body[1].items()}, timeout=60)
    if isinstance(body, dict):
        return httpx.post(server.url + path, data=body, timeout=60)
    return httpx.post(server.url + path, content=body, headers=headers, timeout=60)


def test_every_request_field_takes_hostile_values_without_a_5xx(walk_server):
    failures, tried, fields = [], 0, set()
    for api, field, value, path, headers, body in body_cases():
        tried += 1
        fields.add((api, field))
        problem = verdict(send(walk_server, path, headers, body))
        if problem:
            failures.append(f"{api} {field}={value[:40]!r}: {problem}")
    assert httpx.get(walk_server.url + "/health", timeout=10).json()["status"] == "ok"
    print(f"request walk: {len(fields)} fields of 2 APIs, {tried} requests, {len(failures)} failures")
    assert not failures, "\n".join(failures)


BODIES = [  # whole bodies no field walk sends
    ("multipart without a boundary", {"Content-Type": "multipart/form-data"}, b"q=red"),
    ("a body that is not multipart", {"Content-Type": "multipart/form-data; boundary=xyz"}, b"q=red dog"),
    ("more fields than any request needs", {"Content-Type": "application/x-www-form-urlencoded"},
     "&".join(f"f{i}=1" for i in range(2000)).encode()),
    ("q repeated 240,000 times", {"Content-Type": "application/x-www-form-urlencoded"},
     b"&".join([b"q=a"] * 240_000)),
    ("a JSON array", {"Content-Type": "application/json"}, b"[1, 2]"),
    ("JSON nested 100,000 deep", {"Content-Type": "application/json"}, b'{"q": ' + b"[" * 100_000 + b"]" * 100_000
     + b"}"),
]


@pytest.mark.parametrize("path", ["/translate", "/detect", "/v1/translate"])
def test_hostile_bodies_are_a_4xx_and_leave_the_server_answering(walk_server, path):
    import time
    for name, headers, body in BODIES:
        started = time.monotonic()
        response = httpx.post(walk_server.url + path, content=body,
                              headers={**headers, "Authorization": f"Bearer {KEY}"}, timeout=60)
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:200])
        assert time.monotonic() - started < 5, f"{name}: {time.monotonic() - started:.1f} s"
    assert httpx.get(walk_server.url + "/health", timeout=5).json()["status"] == "ok"


def test_a_key_of_any_letters_works_in_the_header_as_in_the_body(trained_checkpoint):
    key = "schlüssel-ключ-鍵"
    server = ServerProcess(trained_checkpoint, env={"NMT_API_KEY": key})
    try:
        header = httpx.post(server.url + "/v1/translate", json={"text": "red dog"},
                            headers={"X-API-Key": key.encode("utf-8")}, timeout=60)
        body = httpx.post(server.url + "/translate", json={**LT_BASE, "api_key": key}, timeout=60)
        wrong = httpx.post(server.url + "/v1/translate", json={"text": "red dog"},
                           headers={"X-API-Key": "schlussel"}, timeout=60)
    finally:
        server.stop()
    assert (header.status_code, body.status_code, wrong.status_code) == (200, 200, 401)


@pytest.mark.parametrize("field, value", [("prefix", "Ein " * 3000), ("constraints", ["rot " * 3000])])
def test_a_prefix_or_constraint_is_capped_like_a_text(walk_server, field, value):
    """A forced prefix or a constraint costs decoding as a text does: over --max-characters it is a 400 at once,
    not minutes of a worker's time that every later request waits behind."""
    response = httpx.post(walk_server.url + "/v1/translate", json={"text": "A dog.", field: value},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert response.status_code == 400
    assert "characters" in response.json()["error"] and "--max-characters" in response.json()["error"]


def test_alignment_comes_with_attention_as_the_docs_say(walk_server):
    def answer(**fields):
        return httpx.post(walk_server.url + "/v1/translate", json={"text": "red dog", **fields},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=60).json()["translations"][0]
    assert "alignment" not in answer() and "attention" not in answer()
    with_attention = answer(attention=True)
    assert with_attention["alignment"] and with_attention["attention"]
