"""Documents: texts of several sentences and lines, and HTML, translated sentence by sentence and put back together
(nmt.documents), through the library, `nmt translate --split-sentences` and `nmt translate --format html`. The model
is the tiny copy model of conftest (it learned to repeat lines of WORDS), so every translated word is a word of
WORDS and a word the markup wrapped can be followed."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from bs4 import BeautifulSoup, Comment

from conftest import WORDS, run_nmt
from nmt.documents.engine import DocumentEngine
from nmt.documents.sentences import cut_to_fit, sentence_spans
from nmt.documents.text import TextDocument
from nmt.engines.pytorch import Translator


@pytest.fixture(scope="module")
def copier(trained_checkpoint):
    return Translator(trained_checkpoint)


@pytest.mark.parametrize("text", [
    "", "   ", "one line.", "  Two. Sentences here!  ", "a.\n\nb. c.\r\nd.\n", "\n\n  x y z.  \n\t\n",
    "Dr. Müller kam z. B. um 10 Uhr. Er ging.", "M. Dupont est arrivé. « C'est bien. » Il part."])
def test_a_text_is_its_sentences_and_the_spaces_between_them(text):
    document = TextDocument(text, "en")
    assert document.join(document.sentences) == text
    assert all(sentence == sentence.strip() and sentence for sentence in document.sentences)
    assert all(not gap.strip() for gap in document.gaps)


@pytest.mark.parametrize("language, text, expected", [
    ("de", "Dr. Müller kam z. B. um 10 Uhr. Er sagte: „Das ist gut.“ Dann ging er.", 3),
    ("fr", "Le chat dort sur le canapé. Il fait beau aujourd'hui ! Nous partons à 10 h 30, etc. demain.", 3),
    ("en", "A man rides a bike. A dog runs in the park. Two children play.", 3),
    ("xx", "A language without rules of its own. It falls back to English.", 2),
])
def test_sentences_are_split_with_the_languages_rules(language, text, expected):
    assert len(sentence_spans(text, language)) == expected


def test_a_sentence_too_long_is_cut_after_clause_marks_first():
    sentence = ", ".join(f"clause {i} of words" for i in range(40)) + "."
    parts = cut_to_fit(sentence, len, 100)  # characters stand in for pieces
    assert len(parts) > 1 and all(len(part) <= 100 for part in parts)
    assert all(part.endswith(",") for part in parts[:-1])
    assert " ".join(parts) == sentence
    assert cut_to_fit("x" * 250, len, 100) == ["x" * 100, "x" * 100, "x" * 50]  # no cut point at all
    assert cut_to_fit("short one", len, 100) == ["short one"]


def test_a_sentence_too_long_for_the_model_is_translated_in_parts_and_counted(copier):
    long_sentence = ", ".join(["red dog runs near the water"] * 250) + "."  # about 1,500 pieces: past 1,024
    from nmt.documents.engine import piece_counter, source_limit
    from nmt.documents.plan import DocumentPlan

    text = f"blue cat. {long_sentence}"
    count, limit = piece_counter(copier), source_limit(copier)
    plan = DocumentPlan.of([TextDocument(text, "en")], count, limit)
    (_, long_parts), = plan.parts
    assert len(long_parts) >= 2 and all(count(plan.inputs[p]) <= limit for p in long_parts)
    assert " ".join(plan.inputs[p] for p in long_parts) == long_sentence  # cut after commas, nothing lost
    translation = DocumentEngine(copier).translate([text])[0][0]
    assert translation.cut == 1 and len(translation.sentences) == 2 and copier.truncated == 0


def test_a_paragraph_comes_back_with_its_line_structure(copier):
    text = "  red dog runs. blue cat jumps.\n\ngreen ball\r\n\n  the man plays with a ball.  "
    translation = DocumentEngine(copier).translate([text])[0][0]
    shape = re.sub(r"[^\s]+", "w", translation.text)
    assert re.sub(r"\S+", "w", translation.text).split("\n")[0].startswith("  w")
    assert [line.strip() == "" for line in translation.text.split("\n")] == \
        [line.strip() == "" for line in text.split("\n")]
    assert translation.text.endswith("  ") and "\r\n" in translation.text and shape.count("\n") == 4
    assert len(translation.sentences) == 4
    words = translation.text.split()
    assert words and all(word.strip(".") in WORDS for word in words)


def test_split_sentences_on_the_command_line_keeps_one_line_per_line(trained_checkpoint, tmp_path):
    lines = "red dog runs. blue cat jumps.\n\n  green ball  \nthe man plays.\n"
    out = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--split-sentences", input=lines).stdout
    assert out.split("\n")[1] == "" and out.split("\n")[2].startswith("  ") and out.count("\n") == 4
    plain = run_nmt("translate", "--checkpoint", str(trained_checkpoint), input="green ball\nred dog runs\n").stdout
    split = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--split-sentences",
                    input="green ball\nred dog runs\n").stdout
    assert split == plain  # a sentence a line: nothing changes


SNIPPETS = [
    '<p>red dog <b>runs</b> near the water.</p>',
    '<p>the <a href="https://example.org/?a=1&amp;b=2" title="a big dog">dog</a> plays. the cat <i>jumps</i>.</p>',
    '<p><b>red dog runs. blue</b> cat jumps.</p>',  # an inline element across sentences
    '<p>a <b>big <i>red</i> ball</b> near the street</p>',  # nested
    '<p>the man runs<br>the woman plays</p>',
    '<ul>\n  <li>red ball</li>\n  <li>blue <em>ball</em></li>\n</ul>',
    '<table><tr><td>green water</td><td class="x">the <strong>dog</strong></td></tr></table>',
    '<div>a cat<script>if (a < b && c) { x("<b>red</b>"); }</script><style>p > b { color: red }</style> runs</div>',
    '<p>run <code>ls -l &lt;dir&gt;</code> with a dog</p><pre>  keep   this\n  as is </pre>',
    '<p>a dog &amp; a cat &lt;3 &nbsp;near&nbsp;the water</p>',
    '<p translate="no">red dog runs</p><p>blue cat <span class="notranslate">the man</span> jumps</p>',
    '<p>a <img src="d.png" alt="a red dog"> near the street <!-- a comment --> runs</p>',
    '<p>unclosed <b>bold <i>red dog</p> runs <div>the cat',  # malformed: parsed as well as it reads
    '<p>a <b>red <!-- kept --> dog</b> runs</p>',  # a comment inside an inline element
    '<p>run <span>the <code><abbr title="keep this">ls</abbr></code> now</span></p>',  # an attribute inside code
]


def elements(html: str) -> Counter:
    soup = BeautifulSoup(html, "html.parser")
    return Counter((tag.name, tuple(sorted((k, str(v)) for k, v in tag.attrs.items() if k not in ("alt", "title"))))
                   for tag in soup.find_all(True))


def untouched(html: str) -> list[str]:
    soup = BeautifulSoup(html, "html.parser")
    kept = [str(tag) for tag in soup.find_all(["script", "style", "code", "pre"])]
    kept += [str(tag) for tag in soup.find_all(attrs={"translate": "no"})]
    kept += [str(tag) for tag in soup.find_all(class_="notranslate")]
    kept += [str(tag) for tag in soup.find_all(lambda t: t.find_parent(["code", "pre"]) is not None)]
    return kept + [str(comment) for comment in soup.find_all(string=lambda s: isinstance(s, Comment))]


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_html_keeps_its_elements_and_untranslated_parts_and_translates_every_text(copier, snippet):
    translated = DocumentEngine(copier, "html").translate([snippet])[0][0].text
    assert elements(translated) == elements(snippet)
    assert untouched(translated) == untouched(BeautifulSoup(snippet, "html.parser").decode())
    soup = BeautifulSoup(translated, "html.parser")
    for hidden in soup.find_all(["script", "style", "code", "pre"]) + soup.find_all(attrs={"translate": "no"}) + \
            soup.find_all(class_="notranslate"):
        hidden.decompose()
    words = soup.get_text(" ").split()
    assert words and all(word.strip(".&<3") in WORDS or word in ("&", "<3") for word in words), words


def test_inline_markup_follows_the_words_it_wrapped(copier):
    translated = DocumentEngine(copier, "html").translate(['<p>red dog <b>runs</b> near the water.</p>',
                                                           '<p>the <a href="x">dog</a> plays</p>'])
    assert "<b>runs</b>" in translated[0][0].text
    assert '<a href="x">dog</a>' in translated[1][0].text


def test_inline_markup_goes_where_the_alignment_puts_its_words():
    """A translation that reverses the words (given as the engine gives it: pieces and their alignment): the bold
    element follows its word to the other end, and the punctuation outside it stays outside."""
    from nmt.documents.html import HtmlDocument
    from nmt.engines.base import Translation

    document = HtmlDocument("<p>red <b>dog</b> runs now.</p>", "en")
    assert document.sentences == ["red dog runs now."]
    words = ["now.", "runs", "dog", "red"]
    reversed_words = Translation(" ".join(words), -1.0, [f"\u2581{w}" for w in words],
                                 [f"\u2581{w}" for w in ["red", "dog", "runs", "now."]], None,
                                 [(3, 0), (2, 1), (1, 2), (0, 3)])
    assert document.assemble([reversed_words]) == "<p>now. runs <b>dog</b> red</p>"


def identity(sentence: str):
    """The translation a perfect copier gives: the same words, each aligned to itself."""
    from nmt.engines.base import Translation

    words = sentence.split()
    return Translation(sentence, 0.0, [f"\u2581{w}" for w in words], [f"\u2581{w}" for w in words], None,
                       [(i, i) for i in range(len(words))])


PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>A page</title>
    <style>p > b { color: red; }</style>
  </head>
  <body>
    <!-- navigation -->
    <h1 class="title">Red <em>dogs</em> and blue cats</h1>
    <p>A man <b>rides</b> a bike.<br>
      A <a href="/dogs?a=1&amp;b=2" title="Dogs">dog</a> runs &amp; jumps.</p>
    <ul>
      <li>One <code>x &lt; y</code> here</li>
      <li translate="no">Two   spaced</li>
    </ul>
    <pre>  keep
   this </pre>
    <img src="d.png" alt="A dog">
    <script>if (a < b) { go("<p>"); }</script>
  </body>
</html>
"""


def test_a_page_copied_word_for_word_comes_back_byte_for_byte():
    """Everything but the translated words is left as it was: spaces, line breaks, comments, doctype, scripts."""
    from nmt.documents.html import HtmlDocument

    document = HtmlDocument(PAGE, "en")
    assert "A man rides a bike." in document.sentences and "Dogs" in document.sentences
    assert document.assemble([identity(s) for s in document.sentences]) == PAGE


def test_html_nested_too_deep_is_refused_in_one_line(trained_checkpoint):
    result = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--format", "html",
                     input="<b>" * 5000 + "red dog", check=False)
    assert result.returncode == 1 and "nests elements more than 400 deep" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_alt_and_title_are_translated_and_entities_survive(copier):
    # words the copy model never saw: what it writes for them is words of WORDS
    snippet = ('<p title="zebra giraffe">a dog runs <span translate="no">R&amp;D&nbsp;&lt;3</span></p>'
               '<a href="?a=1&amp;b=2"><img alt="okapi" src="b.png"></a>')
    translated = DocumentEngine(copier, "html").translate([snippet])[0][0].text
    soup = BeautifulSoup(translated, "html.parser")
    for value in (soup.p["title"], soup.img["alt"]):
        assert value.split() and all(w in WORDS for w in value.split())
    assert soup.img["src"] == "b.png"
    assert '<span translate="no">R&amp;D&nbsp;&lt;3</span>' in translated and 'href="?a=1&amp;b=2"' in translated


def test_format_html_on_the_command_line(trained_checkpoint, tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<!DOCTYPE html>\n<html>\n<head><title>red dog</title></head>\n<body>\n  <p>the <b>cat</b> '
                    'runs</p>\n</body>\n</html>\n', encoding="utf-8")
    out = tmp_path / "out" / "page.de.html"
    out.parent.mkdir()
    run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--format", "html", "--input", str(page),
            "--output", str(out))
    translated = out.read_text(encoding="utf-8")
    assert elements(translated) == elements(page.read_text(encoding="utf-8"))
    assert "\n<body>\n  <p>" in translated and "<b>cat</b>" in translated


def test_format_html_on_the_command_line_leaves_comments_and_code_attributes_alone(trained_checkpoint):
    page = '<p>a <b>red <!-- kept --> dog</b> runs <code><abbr title="keep this">ls</abbr></code> now</p>'
    out = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--format", "html", input=page).stdout
    assert "<!-- kept -->" in out and '<code><abbr title="keep this">ls</abbr></code>' in out


@pytest.mark.parametrize("given, message", [
    (b"<p></p><!-- nothing -->", "no text to translate (only markup)"),
    (b"\xff\xfe<p>x</p>", "not UTF-8"),
])
def test_format_html_refuses_what_it_cannot_translate_in_one_line(trained_checkpoint, given, message):
    result = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--format", "html", input=given,
                     check=False)
    assert result.returncode == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("option", [["--nbest", "2"], ["--json"], ["--print-alignment"], ["--attention-plot", "p"],
                                    ["--prefix-file", "p.txt"], ["--constraints", "c.tsv"]])
def test_format_html_refuses_line_options_before_loading(option):
    result = run_nmt("translate", "--checkpoint", "missing.pt", "--format", "html", *option, input=b"<p>x</p>",
                     check=False)
    assert result.returncode == 1 and f"{option[0]}: not with --format html" in result.stderr


def test_split_sentences_with_nbest_prefixes_and_a_glossary(trained_checkpoint, tmp_path):
    checkpoint = str(trained_checkpoint)
    nbest = run_nmt("translate", "--checkpoint", checkpoint, "--split-sentences", "--nbest", "2", "--beam", "2",
                    input="red dog runs. blue cat jumps.\n").stdout.splitlines()
    assert [line.split(" ||| ")[0] for line in nbest] == ["0", "0"]  # two alternatives of the whole line
    assert all(len(line.split(" ||| ")[1].split()) >= 4 for line in nbest)
    prefixes = tmp_path / "prefixes.txt"
    prefixes.write_text("woman\n", encoding="utf-8")
    forced = run_nmt("translate", "--checkpoint", checkpoint, "--split-sentences", "--prefix-file", str(prefixes),
                     input="red dog runs. blue cat jumps.\n").stdout
    assert forced.startswith("woman")  # the prefix starts the line's first sentence
    glossary = tmp_path / "glossary.tsv"
    glossary.write_text("cat\tzebra\n", encoding="utf-8")
    termed = run_nmt("translate", "--checkpoint", checkpoint, "--split-sentences", "--glossary", str(glossary),
                     "--beam", "8", input="red dog runs. blue cat jumps.\n").stdout
    assert "zebra" in termed  # a word the copying model never writes on its own
    from nmt.terminology import Glossary

    engine = DocumentEngine(Translator(trained_checkpoint), glossary=Glossary.load(glossary))
    first, second = engine.translate(["red dog runs. blue cat jumps."], constraints=[["zebra"]])[0][0].sentences
    assert "zebra" in second.text and "zebra" not in first.text  # the term goes to the sentence holding its source
    constraints = tmp_path / "constraints.tsv"
    constraints.write_text("zebra\n", encoding="utf-8")
    refused = run_nmt("translate", "--checkpoint", checkpoint, "--split-sentences", "--constraints",
                      str(constraints), input="red dog runs. blue cat jumps.\n", check=False)
    assert refused.returncode == 1 and "cannot be given to one of them" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_a_line_with_a_sentence_too_long_for_the_model_is_named_on_the_command_line(trained_checkpoint):
    long_sentence = ", ".join(["red dog runs near the water"] * 250) + "."  # about 1,500 pieces
    result = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--split-sentences",
                     input=f"blue cat.\n{long_sentence}\n")
    assert result.stdout.count("\n") == 2
    assert "translated in parts, cut at clause marks, in line 2" in result.stderr
    assert "were cut" not in result.stderr  # nothing truncated: every part reached the model
