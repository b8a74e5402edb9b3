"""Corpus recipes as data: where each file comes from, its checksum, and which files make each split."""

from __future__ import annotations

from dataclasses import dataclass, field

from nmt.data.download import RemoteFile
from nmt.data.text import CleaningOptions


@dataclass(frozen=True)
class Recipe:
    name: str
    src: str
    tgt: str
    description: str
    files: dict[str, RemoteFile]  # by upstream file name
    splits: dict[str, tuple[str, str]]  # split -> (source file name, target file name)
    vocab_size: int = 8000
    cleaning: CleaningOptions = field(default_factory=CleaningOptions)


# Multi30k task 1 (Elliott et al. 2016), pinned to one commit of https://github.com/multi30k/dataset.
_MULTI30K_COMMIT = "a3d2e0d26b56f3846f66a952536ffed4e401d05a"
_MULTI30K_URL = f"https://raw.githubusercontent.com/multi30k/dataset/{_MULTI30K_COMMIT}/data/task1/raw"
_MULTI30K_FILES = {  # name: (bytes, sha256)
    "train.en.gz": (568929, "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
    "train.de.gz": (637044, "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"),
    "train.fr.gz": (604242, "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c"),
    "train.cs.gz": (593827, "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077"),
    "val.en.gz": (21650, "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
    "val.de.gz": (24681, "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a"),
    "val.fr.gz": (23001, "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9"),
    "val.cs.gz": (22096, "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc"),
    "test_2016_flickr.en.gz": (21077, "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"),
    "test_2016_flickr.de.gz": (22890, "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"),
    "test_2016_flickr.fr.gz": (22310, "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90"),
    "test_2016_flickr.cs.gz": (22572, "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1"),
}


def _multi30k(src: str, tgt: str) -> Recipe:
    files = {}
    splits = {}
    for split, stem in (("train", "train"), ("valid", "val"), ("test", "test_2016_flickr")):
        names = (f"{stem}.{src}.gz", f"{stem}.{tgt}.gz")
        for name in names:
            size, sha256 = _MULTI30K_FILES[name]
            files[name] = RemoteFile(name, f"{_MULTI30K_URL}/{name}", sha256, size)
        splits[split] = names
    return Recipe(
        name=f"multi30k-{src}-{tgt}", src=src, tgt=tgt,
        description=f"Multi30k task 1 {src}->{tgt}: 29,000 train, 1,014 valid (val), 1,000 test (test_2016_flickr)",
        files=files, splits=splits, vocab_size=8000,
        # Image captions are short; the 1.5 ratio meant for WMT would drop a few per cent of good pairs here.
        cleaning=CleaningOptions(max_tokens=250, max_ratio=3.0),
    )


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for pair in (("en", "de"), ("en", "fr"), ("en", "cs"))
    for recipe in (_multi30k(*pair), _multi30k(*reversed(pair)))
}
