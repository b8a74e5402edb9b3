"""The Multi30k recipe from the shared mirror (skipped where ../shared/data/multi30k is absent)."""

from conftest import SHARED_MULTI30K, requires_multi30k, run_nmt

from nmt.data.binary import load_manifest
from nmt.data.recipes import RECIPES


@requires_multi30k
def test_multi30k_en_de_prepares_from_the_mirror(tmp_path):
    out = tmp_path / "m30k"
    result = run_nmt("prepare", "multi30k-en-de", "--out", str(out), "--mirror", str(SHARED_MULTI30K),
                     "--vocab-size", "2000")
    assert "train 2" in result.stderr.replace(",", "")
    manifest = load_manifest(out)
    assert manifest["splits"]["valid"]["sentences"] == 1014
    assert manifest["splits"]["test"]["sentences"] == 1000
    assert 28_900 < manifest["splits"]["train"]["sentences"] <= 29_000
    raw_test = (out / "test.de").read_text(encoding="utf-8").splitlines()
    assert len(raw_test) == 1000 and raw_test[0].startswith("Ein Mann mit einem orangefarbenen Hut")


def test_recipes_cover_the_multi30k_pairs_with_pinned_checksums():
    for name in ("multi30k-en-de", "multi30k-en-fr", "multi30k-en-cs", "multi30k-de-en"):
        recipe = RECIPES[name]
        assert set(recipe.splits) == {"train", "valid", "test"}
        for remote in recipe.files.values():
            assert remote.url.startswith("https://raw.githubusercontent.com/multi30k/dataset/")
            assert len(remote.sha256) == 64 and remote.size > 0
