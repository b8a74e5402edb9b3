"""`nmt serve` as a client meets it: a real server process on 127.0.0.1 (uvicorn) and a real HTTP client (httpx)."""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, SHARED_MULTI30K, requires_multi30k, run_nmt

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

KEY = "test-key-3f9a"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`python -m nmt serve ...` in a subprocess, its stderr collected, ready once /health answers."""

    def __init__(self, checkpoint: Path, *options: str, env: dict | None = None, threads: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_lines: list[str] = []
        environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nmt", "serve", "--checkpoint", str(checkpoint), "--port", str(self.port),
             "--threads", str(threads), *options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nmt serve exited {self.process.returncode}:\n{self.log}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"nmt serve did not become healthy:\n{self.log}")

    def _read(self) -> None:
        for line in self.process.stdout:
            self.log_lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def metric(self, name: str, **labels: str) -> float:
        """A sample's value from /metrics (0 where absent)."""
        text = httpx.get(self.url + "/metrics", headers={"X-API-Key": KEY}, timeout=10).text
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
        match = re.search("^" + pattern + "$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        return self.process.returncode


@pytest.fixture(scope="module")
def server(trained_checkpoint):
    # two threads: two worker processes decoding batches side by side (the default on a CPU)
    running = ServerProcess(trained_checkpoint, "--max-beam", "6", "--max-sentences", "200", env={"NMT_API_KEY": KEY},
                            threads=2)
    yield running
    running.stop()


def v1(server, body, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + "/v1/translate", json=body, headers=headers, timeout=60, **kwargs)


def assert_alive(server) -> None:
    assert httpx.get(server.url + "/health", timeout=10).json()["status"] == "ok"
    assert v1(server, {"text": "red dog"}).status_code == 200


def test_v1_translates_with_nbest_and_attention(server):
    answer = v1(server, {"text": ["red dog runs", "a big cat"], "nbest": 2, "attention": True})
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["translations"]
    assert first["text"] == "red dog runs"  # the copy task, learned
    assert len(first["nbest"]) == 2 and first["nbest"][0]["text"] == first["text"]
    layers = first["attention"]
    # one row per target piece (and eos), one column per source piece (and eos), rows summing to 1
    assert len(layers) == 2 and len(layers[0]) == len(first["tokens"]) + 1
    assert all(len(row) == len(first["source_tokens"]) + 1 for row in layers[0])
    assert all(abs(sum(row) - 1) < 1e-2 for row in layers[-1])
    assert second["text"] == "a big cat"


def test_v1_constraints_for_one_text_and_for_each_of_several(server):
    one = v1(server, {"text": "red dog runs", "constraints": ["woman"], "nbest": 2})
    assert one.status_code == 200, one.text
    answer = one.json()["translations"][0]
    assert all(re.search(r"\bwoman\b", t["text"]) for t in answer["nbest"])  # the copying model's own: never
    several = v1(server, {"text": ["red dog runs", "a big cat", "blue"], "constraints": [["green bike"], [], ["cat"]]})
    assert several.status_code == 200, several.text
    first, second, third = (t["text"] for t in several.json()["translations"])
    assert "green bike" in first and second == "a big cat" and re.search(r"\bcat\b", third)


def test_a_server_glossary_applies_to_both_apis(trained_checkpoint, tmp_path):
    glossary = tmp_path / "glossary.tsv"
    glossary.write_text("dog\tzebra\ncat\tgreen bike\n", encoding="utf-8")
    running = ServerProcess(trained_checkpoint, "--glossary", str(glossary), "--max-beam", "8")
    try:
        lt = httpx.post(running.url + "/translate", json={"q": ["red dog runs", "blue ball"], "source": "auto",
                                                         "target": "tgt"}, timeout=60)
        assert lt.status_code == 200, lt.text
        first, second = lt.json()["translatedText"]
        assert re.search(r"\bzebra\b", first) and second == "blue ball"  # a copying model never writes zebra
        answer = v1(running, {"text": "a cat", "constraints": ["woman"]}, key=None)
        assert answer.status_code == 200, answer.text
        text = answer.json()["translations"][0]["text"]
        assert "green bike" in text and re.search(r"\bwoman\b", text)  # the request's phrase and the glossary's
        # In a text of several sentences each term goes to the sentence that holds its source term.
        split = v1(running, {"text": "red dog runs. a blue cat.", "attention": True}, key=None)
        assert split.status_code == 200, split.text
        first, second = (s["text"] for s in split.json()["translations"][0]["sentences"])
        assert re.search(r"\bzebra\b", first) and "green bike" not in first
        assert "green bike" in second and not re.search(r"\bzebra\b", second)
        both = v1(running, {"text": "dog and cat"}, key=None)  # "zebra" (6 pieces), "green bike": a beam of 9 > 8
        assert both.status_code == 400 and "with the server's glossary terms" in both.json()["error"]
    finally:
        assert running.stop() == 0


def test_libretranslate_api_in_json_form_and_query(server):
    for request in (dict(json={"q": "green ball", "source": "auto", "target": "tgt", "api_key": KEY}),
                    dict(data={"q": "green ball", "source": "src", "target": "tgt", "api_key": KEY}),
                    dict(params={"q": "green ball", "source": "src", "target": "tgt", "api_key": KEY}),
                    dict(files={"q": (None, "green ball"), "source": (None, "src"), "target": (None, "tgt"),
                                "api_key": (None, KEY)})):
        answer = httpx.post(server.url + "/translate", timeout=60, **request)
        assert answer.status_code == 200, (request, answer.text)
        assert answer.json()["translatedText"] == "green ball"
    batch = httpx.post(server.url + "/translate", json={"q": ["red dog", "blue cat"], "source": "auto",
                                                        "target": "tgt", "alternatives": 2, "api_key": KEY},
                       timeout=60).json()
    assert batch["translatedText"] == ["red dog", "blue cat"]
    assert [len(a) for a in batch["alternatives"]] == [2, 2]
    assert batch["detectedLanguage"][0]["language"] == "src"
    detected = httpx.post(server.url + "/detect", data={"q": "red dog", "api_key": KEY}, timeout=10)
    assert detected.json() == [{"confidence": 100.0, "language": "src"}]
    assert httpx.post(server.url + "/detect", data={"q": "red dog", "api_key": "wrong"}, timeout=10).status_code == 403
    not_text = httpx.post(server.url + "/detect", json={"q": 5, "api_key": KEY}, timeout=10)
    assert not_text.status_code == 400 and "q must be a string" in not_text.json()["error"]
    languages = httpx.get(server.url + "/languages", timeout=10).json()
    assert languages[0]["code"] == "src" and languages[0]["targets"] == ["tgt"]


def test_keys(server):
    assert v1(server, {"text": "red"}, key=None).status_code == 401
    assert v1(server, {"text": "red"}, key="wrong").status_code == 401
    assert httpx.post(server.url + "/v1/translate", json={"text": "red"}, headers={"X-API-Key": KEY},
                      timeout=60).status_code == 200
    assert httpx.get(server.url + "/metrics", timeout=10).status_code == 401
    lt = {"q": "red", "source": "src", "target": "tgt"}
    missing = httpx.post(server.url + "/translate", json=lt, timeout=10)
    assert missing.status_code == 400 and "error" in missing.json()
    wrong = httpx.post(server.url + "/translate", json={**lt, "api_key": "wrong"}, timeout=10)
    assert wrong.status_code == 403 and wrong.json() == {"error": "Invalid API key"}


def test_metrics_count_what_was_sent(server):
    before = server.metric("nmt_requests_total", endpoint="/v1/translate", status="200")
    sentences = server.metric("nmt_translated_sentences_total")
    for _ in range(3):
        assert v1(server, {"text": ["red", "blue"]}).status_code == 200
    assert server.metric("nmt_requests_total", endpoint="/v1/translate", status="200") == before + 3
    assert server.metric("nmt_translated_sentences_total") == sentences + 6


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "Invalid JSON"),
    (b'{"text": 5}', 400, "text must be a string or a list of strings"),
    (b'{"text": "red", "beam": "4"}', 400, "beam must be a whole number"),
    (b'{"beam": 4}', 400, "text is required"),
    (b'{"text": "red \xff dog"}', 400, "Invalid JSON"),  # invalid UTF-8
    (b'{"text": "red", "beam": 0}', 400, "beam must be between 1 and 6"),
    (b'{"text": "red", "beam": 7}', 400, "beam must be between 1 and 6"),
    (b'{"text": "red", "beam": 2, "nbest": 3}', 400, "nbest must be between 1 and beam"),
    (json.dumps({"text": ["a"] * 100_000}).encode(), 400, "the limit is 200"),
    (json.dumps({"text": "dog " * 2000}).encode(), 400, "characters; the limit is 5,000"),
    (b'{"text": ["red", "blue"], "constraints": ["cat"]}', 400, "a list of strings for one text"),
    (b'{"text": ["red", "blue"], "constraints": [["cat"]]}', 400, "constraints has 1 entries for 2 texts"),
    (b'{"text": "red", "constraints": "cat"}', 400, "constraints must be a list of strings"),
    (b'{"text": "red", "constraints": ["cat", " "]}', 400, "constraints: an empty constraint"),
    (b'{"text": "red", "constraints": ["zebra crossing"]}', 400, "above this server's limit of 6 (--max-beam)"),
])
def test_bad_input_is_a_4xx_with_a_message(server, body, status, message):
    answer = httpx.post(server.url + "/v1/translate", content=body, timeout=60,
                        headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert_alive(server)


@pytest.mark.parametrize("text", ["", "  \n\t ", ["red", "   "]])
def test_a_text_with_nothing_to_translate_is_a_400_naming_it(server, text):
    answer = v1(server, {"text": text})
    assert answer.status_code == 400 and "holds nothing to translate (only spaces)" in answer.json()["error"]


def test_oversized_bodies_with_and_without_content_length(server):
    body = b'{"text": "' + b"a" * 10_000_000 + b'"}'
    declared = httpx.post(server.url + "/v1/translate", content=body, headers={"X-API-Key": KEY}, timeout=60)
    assert declared.status_code == 413 and "limit" in declared.json()["error"]

    def chunks():  # no Content-Length: Transfer-Encoding chunked, the limit counted on what arrives
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]
    chunked = httpx.post(server.url + "/v1/translate", content=chunks(), headers={"X-API-Key": KEY}, timeout=60)
    assert chunked.status_code == 413 and "passed the limit" in chunked.json()["error"]
    assert_alive(server)


def test_libretranslate_errors(server):
    def lt(**fields):
        return httpx.post(server.url + "/translate", json={"api_key": KEY, **fields}, timeout=60)
    pair = lt(q="red", source="en", target="fr")
    assert pair.status_code == 400 and pair.json()["error"] == "en->fr is not served: this server translates src->tgt"
    assert lt(source="src", target="tgt").json() == {"error": "Invalid request: missing q parameter"}
    assert lt(q="red", source="src", target="tgt", format="pdf").json() == {
        "error": "Invalid request: format must be text or html, not 'pdf'"}
    assert lt(q=["red", 3], source="src", target="tgt").status_code == 400
    invalid = httpx.post(server.url + "/translate", content=b"q=red%FF&source=src&target=tgt&api_key=" + KEY.encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert invalid.status_code == 400 and "UTF-8" in invalid.json()["error"]
    assert_alive(server)


def test_access_log_holds_neither_text_nor_key(server):
    secret_text = "zebra woman near water"
    httpx.post(server.url + "/translate", params={"q": secret_text, "source": "src", "target": "tgt",
                                                  "api_key": KEY}, timeout=60)
    v1(server, {"text": secret_text})
    time.sleep(0.3)
    assert "POST /translate 200" in server.log  # the request is logged, without its query string
    assert "zebra" not in server.log and KEY not in server.log


def test_page_is_served_offline(server):
    page = httpx.get(server.url + "/", timeout=10)
    assert page.status_code == 200 and "static/app.js" in page.text
    # nothing from another host, and paths relative to the page, so that it works behind a proxy's sub-path too
    assert re.findall(r"(?:href|src)=\"([^\"]+)\"", page.text) == ["static/style.css", "static/app.js"]
    script = httpx.get(server.url + "/static/app.js", timeout=10)
    assert script.status_code == 200 and "://" not in script.text and "://" not in page.text


@requires_multi30k
def test_concurrent_clients_get_what_decoding_alone_gives(server, trained_checkpoint):
    """16 clients x 10 requests of test_2016_flickr lines, all answered; each answer what the line gives alone."""
    from nmt.config import SearchConfig
    from nmt.engines.pytorch import Translator

    with gzip.open(SHARED_MULTI30K / "test_2016_flickr.en.gz", "rt", encoding="utf-8") as lines:
        sentences = [line.strip() for _, line in zip(range(160), lines)]
    batches_before = server.metric("nmt_batch_sentences_count")
    sentences_before = server.metric("nmt_batch_sentences_sum")

    def client(number: int) -> list[str]:
        with httpx.Client(headers={"X-API-Key": KEY}, timeout=120) as session:
            return [session.post(server.url + "/v1/translate", json={"text": sentences[number * 10 + i]}
                                 ).json()["translations"][0]["text"] for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        served = [text for texts in pool.map(client, range(16)) for text in texts]
    assert len(served) == 160

    alone = Translator(trained_checkpoint, SearchConfig(beam=4, lenpen=0.6), device="cpu")
    differ = sum(alone.translate([sentence])[0][0].text != text for sentence, text in zip(sentences, served))
    print(f"{differ} of 160 answers differ from decoding the line alone")
    assert differ <= 2
    batches = server.metric("nmt_batch_sentences_count") - batches_before
    assert (server.metric("nmt_batch_sentences_sum") - sentences_before) / batches > 1.5  # batched, not one by one


def test_full_queue_deadline_and_disconnect(trained_checkpoint):
    """One sentence at a time (--max-tokens 1) and a long one first (--min-len: seconds to decode), so that the
    others wait behind it."""
    # The long sentence must outlast the queued one's deadline (~2.7 s in) on any CPU: about 10 s on an AMD EPYC
    # VM at beam 32 (at beam 16, under 5 s there, a faster CPU once finished it in time to serve the queued one).
    slow = ServerProcess(trained_checkpoint, "--max-tokens", "1", "--max-queue", "2", "--max-sentences", "2",
                         "--timeout", "2", "--max-beam", "32", "--min-len", "750")
    try:
        long_text = " ".join(["red dog runs near the big water"] * 110)  # ~770 pieces
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            blocker = pool.submit(httpx.post, slow.url + "/v1/translate", json={"text": long_text, "beam": 32},
                                  timeout=60)
            time.sleep(0.5)  # the worker is on it
            leaver = pool.submit(httpx.post, slow.url + "/v1/translate", json={"text": "red dog"}, timeout=0.5)
            time.sleep(0.2)
            queued = pool.submit(httpx.post, slow.url + "/v1/translate", json={"text": "blue cat"}, timeout=60)
            time.sleep(0.2)
            full = httpx.post(slow.url + "/v1/translate", json={"text": ["a", "b"]}, timeout=60)
            assert full.status_code == 503 and full.headers["retry-after"] == "1"
            assert "busy" in full.json()["error"]
            with pytest.raises(httpx.TimeoutException):
                leaver.result()
            assert blocker.result().status_code == 504  # past --timeout 2
            # The long sentence left its batch when its request timed out (nothing decodes what nobody waits for),
            # so the queued one, 0.7 s from its own deadline then, is decoded: in time, or given up in turn.
            queued_status = queued.result().status_code
            assert queued_status in (200, 504)
        assert slow.metric("nmt_dropped_sentences_total", reason="disconnect") == 1  # the leaver's sentence
        assert slow.metric("nmt_dropped_sentences_total", reason="deadline") == 1 + (queued_status == 504)
        # And the next request is served at once, not after the seconds the long sentence would still have taken.
        answer = httpx.post(slow.url + "/v1/translate", json={"text": "green ball"}, timeout=60)
        assert answer.status_code == 200, (answer.text, slow.log)
        # As decoded alone. (Not "starts with green ball": forced to 750 pieces, the beam may prefer a worse start
        # for a better continuation, and which it prefers depends on the weights, which differ from CPU to CPU.)
        alone = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--min-len", "750", "--threads", "1",
                        input="green ball\n").stdout.strip()
        assert answer.json()["translations"][0]["text"] == alone
    finally:
        slow.stop()


@pytest.mark.parametrize("workers", ["--worker-processes", "--worker-threads"])
def test_sigterm_answers_every_accepted_request_and_exits_0(trained_checkpoint, workers):
    running = ServerProcess(trained_checkpoint, "--workers", "2", workers, threads=2)
    outcomes: list[str] = []

    def client() -> None:  # requests one after another until the server stops taking them
        with httpx.Client(timeout=60) as session:
            for _ in range(10_000):
                try:
                    answer = session.post(running.url + "/v1/translate", json={"text": "red dog runs near water"})
                except httpx.ConnectError:
                    outcomes.append("refused")  # never accepted: the listener had closed
                    return
                except httpx.TransportError as error:
                    outcomes.append(f"lost: {error!r}")  # accepted and not answered: what must not happen
                    return
                outcomes.append(str(answer.status_code))
                if answer.status_code != 200:
                    return
    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    returncode = running.stop()
    for thread in threads:
        thread.join()
    assert returncode == 0, running.log
    assert not [o for o in outcomes if o.startswith("lost")], outcomes
    assert outcomes.count("200") > 8  # answered before and during the drain
    assert set(outcomes) <= {"200", "503", "refused"}, outcomes
    assert len([o for o in outcomes if o != "200"]) == 8  # each client ended on a refusal, not a lost request
    print(f"{outcomes.count('200')} answered, {outcomes.count('503')} refused with 503, "
          f"{outcomes.count('refused')} connections refused")


def chromium_driver(width: int = 1200, height: int = 900):
    """Headless Debian chromium through Selenium, or a skip that says what is missing."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; "
                    ".ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))


@pytest.mark.parametrize("width", [1200, 390])  # a desktop and a phone
def test_page_in_a_real_browser(server, width):
    """Type a sentence, press translate, wait for the translation: one attention cell per target x source piece."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium_driver(width)
    try:
        driver.get(server.url + "/")
        driver.find_element(By.ID, "source").send_keys("big dog plays with a ball")
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.ID, "translate").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "translation").text.strip())
        expected = v1(server, {"text": "big dog plays with a ball", "attention": True}).json()["translations"][0]
        assert driver.find_element(By.ID, "translation").text == expected["text"]
        cells = driver.find_elements(By.CSS_SELECTOR, "#attention .cell")
        assert len(cells) == (len(expected["tokens"]) + 1) * (len(expected["source_tokens"]) + 1)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#layer option")) == 2  # a view per decoder layer
        row = driver.find_elements(By.CSS_SELECTOR, "#attention .row-label")[0]
        driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('mouseenter'))", row)
        assert driver.find_elements(By.CSS_SELECTOR, "#attention .col.active")  # hover: its source pieces light up
        # nothing but the attention grid (which scrolls itself) is wider than the window
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        # terms: each must appear (the copying model never writes "woman" for this sentence on its own)
        driver.find_element(By.ID, "terms").send_keys("woman; green bike")
        driver.find_element(By.ID, "translate").click()
        WebDriverWait(driver, 60).until(lambda d: "woman" in d.find_element(By.ID, "translation").text)
        assert "green bike" in driver.find_element(By.ID, "translation").text
        driver.find_element(By.ID, "key").clear()
        driver.find_element(By.ID, "key").send_keys("wrong")
        driver.find_element(By.ID, "translate").click()
        WebDriverWait(driver, 30).until(lambda d: "not valid" in d.find_element(By.ID, "status").text)
    finally:
        driver.quit()


@pytest.mark.parametrize("width", [1200])
def test_the_page_keeps_paragraphs_and_shows_the_sentence_under_the_cursor(server, width):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    text = "red dog runs. blue cat jumps.\n\nthe big man plays with a green ball."
    expected = v1(server, {"text": text, "attention": True}).json()["translations"][0]
    driver = chromium_driver(width)
    try:
        driver.get(server.url + "/")
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.execute_script("document.getElementById('source').value = arguments[0]", text)
        driver.find_element(By.ID, "translate").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#translation .sentence"))
        shown = driver.execute_script("return document.getElementById('translation').textContent")
        assert shown == expected["text"] and shown.count("\n") == 2  # the blank line, kept
        sentences = expected["sentences"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#translation .sentence")) == len(sentences) == 3

        def cells() -> int:
            return len(driver.find_elements(By.CSS_SELECTOR, "#attention .cell"))

        def size(sentence) -> int:
            return (len(sentence["tokens"]) + 1) * (len(sentence["source_tokens"]) + 1)
        # the cursor in the third sentence of the text: its attention, its translation marked
        driver.execute_script("const box = document.getElementById('source'); box.focus();"
                              "box.setSelectionRange(arguments[0], arguments[0]);"
                              "box.dispatchEvent(new KeyboardEvent('keyup'))", text.index("the big man") + 3)
        WebDriverWait(driver, 10).until(lambda d: cells() == size(sentences[2]))
        current = driver.find_element(By.CSS_SELECTOR, "#translation .sentence.current")
        assert current.text == sentences[2]["text"]
        assert "Sentence 3 of 3" in driver.find_element(By.ID, "attention-of").text
        driver.execute_script("document.querySelector('#translation .sentence').dispatchEvent("
                              "new MouseEvent('mouseenter'))")
        WebDriverWait(driver, 10).until(lambda d: cells() == size(sentences[0]))
    finally:
        driver.quit()


def test_ctranslate2_engine_serves_and_refuses_what_it_cannot_give(trained_checkpoint, tmp_path):
    pytest.importorskip("ctranslate2")
    from conftest import run_nmt

    run_nmt("export", "ctranslate2", str(trained_checkpoint), str(tmp_path / "ct2"))
    running = ServerProcess(tmp_path / "ct2", "--engine", "ctranslate2")
    try:
        answer = httpx.post(running.url + "/v1/translate", json={"text": ["red dog runs", "a cat"], "nbest": 2},
                            timeout=60)
        assert answer.status_code == 200, answer.text
        assert [t["text"] for t in answer.json()["translations"]] == ["red dog runs", "a cat"]
        for unsupported in ({"attention": True}, {"prefix": "red"}, {"constraints": ["red"]}):
            refused = httpx.post(running.url + "/v1/translate", json={"text": "red dog", **unsupported}, timeout=60)
            assert refused.status_code == 400 and "ctranslate2" in refused.json()["error"]
        lt = httpx.post(running.url + "/translate", json={"q": "blue cat", "source": "auto", "target": "tgt"},
                        timeout=60).json()
        assert lt == {"translatedText": "blue cat", "detectedLanguage": {"confidence": 100.0, "language": "src"}}
        assert httpx.get(running.url + "/health", timeout=10).json()["engine"] == "ctranslate2"
    finally:
        assert running.stop() == 0


@pytest.mark.parametrize("options, message", [
    (["--max-sentences", "10", "--max-queue", "5"], "--max-sentences cannot exceed --max-queue"),
    (["--workers", "0"], "'--workers': must be between 1 and 256"),  # refused when parsed (exit 2)
    (["--port", "70000"], "'--port': must be between 1 and 65535"),
    (["--beam", "12"], "the default beam 12 is above --max-beam 8"),
    (["--api-key", " "], "the API key is empty"),
    (["--glossary", "/nonexistent/glossary.tsv"], "/nonexistent/glossary.tsv: file not found"),
    (["--engine", "ctranslate2", "--glossary", "g.tsv"], "--glossary: not with --engine ctranslate2"),
])
def test_bad_server_options_end_in_one_line(trained_checkpoint, options, message):
    from conftest import run_nmt

    result = run_nmt("serve", "--checkpoint", str(trained_checkpoint), *options, check=False, timeout=60)
    assert result.returncode in (1, 2) and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2


def test_all_interfaces_without_a_key_warns(trained_checkpoint):
    running = ServerProcess(trained_checkpoint, "--host", "0.0.0.0")
    try:
        assert "without an API key" in running.log and "--api-key or NMT_API_KEY" in running.log
    finally:
        assert running.stop() == 0
    quiet = ServerProcess(trained_checkpoint)  # on 127.0.0.1 nothing to warn about
    try:
        assert "without an API key" not in quiet.log
    finally:
        quiet.stop()


# --- texts, HTML and files -------------------------------------------------------------------------------------

PARAGRAPHS = "  red dog runs. blue cat jumps.\n\ngreen ball near the water.\nthe man plays.  "


def line_shape(text: str) -> list[bool]:
    """Which lines are blank: the structure a translated text must keep."""
    return [not line.strip() for line in text.split("\n")]


def test_real_libretranslate_clients_get_paragraphs_html_and_files(server, tmp_path):
    libretranslatepy = pytest.importorskip("libretranslatepy")
    libretranslate_aio = pytest.importorskip("libretranslate_aio")
    text = libretranslatepy.LibreTranslateAPI(server.url, api_key=KEY).translate(PARAGRAPHS, "src", "tgt")
    assert line_shape(text) == line_shape(PARAGRAPHS) and text.startswith("  ") and text.endswith("  ")
    assert "red dog runs" in text and "blue cat jumps" in text and "the man plays" in text  # every sentence

    with libretranslate_aio.LibreTranslate(server.url, api_key=KEY) as client:
        html = client.translate('<p>the <b>dog</b> runs. a <a href="x?a=1&amp;b=2">cat</a> jumps.</p>', "src", "tgt",
                                format="html").translated_text
        assert html.startswith("<p>") and '<a href="x?a=1&amp;b=2">' in html and "<b>" in html
        for name, content in (("notes.txt", PARAGRAPHS), ("page.html", "<ul>\n <li>red <i>ball</i></li>\n</ul>\n")):
            path = tmp_path / name
            path.write_text(content, encoding="utf-8")
            url = client.translate_file(path, "src", "tgt").translated_file_url
            assert url.startswith(server.url + "/download_file/") and url.endswith(name.replace(".", "_tgt."))
            translated = httpx.get(url, timeout=10)
            assert translated.status_code == 200 and "attachment" in translated.headers["content-disposition"]
            assert line_shape(translated.text) == line_shape(content)
    assert "<li>red <i>ball</i></li>" in translated.text


def test_a_sentence_too_long_for_the_model_is_answered_in_parts_and_counted(server):
    answer = v1(server, {"text": "blue cat. " + "a " * 1100 + "dog."})  # 1,100 pieces: past the model's 1,024
    assert answer.status_code == 200, answer.text
    assert answer.json()["translations"][0]["cut"] == 1
    assert "cut" not in v1(server, {"text": "red dog runs. blue cat."}).json()["translations"][0]


def test_v1_texts_are_split_unless_asked_not_to(server):
    split = v1(server, {"text": "red dog runs. blue cat jumps.", "attention": True}).json()["translations"][0]
    assert split["text"] == "red dog runs. blue cat jumps." or len(split["sentences"]) == 2
    assert [s["tokens"] for s in split["sentences"]] and all(s["attention"] for s in split["sentences"])
    whole = v1(server, {"text": "red dog runs. blue cat jumps.", "split": False}).json()["translations"][0]
    assert "sentences" not in whole
    html = v1(server, {"text": "<p>red <b>dog</b> runs</p>", "format": "html"})
    assert html.status_code == 200 and html.json()["translations"][0]["text"] == "<p>red <b>dog</b> runs</p>"
    # malformed: read as well as it can be
    malformed = v1(server, {"text": "<p>red <b>dog <i>runs</p></td> <<>", "format": "html"})
    assert malformed.status_code == 200 and "dog" in malformed.json()["translations"][0]["text"]


def lt_post(server, **fields) -> httpx.Response:
    return httpx.post(server.url + "/translate", json={"source": "src", "target": "tgt", "api_key": KEY, **fields},
                      timeout=60)


@pytest.mark.parametrize("fields, message", [
    ({"q": "red dog. " * 10_000}, "sentences in one request; this server takes at most"),
    ({"q": "<p><img src='a.png'></p><!-- x -->", "format": "html"}, "holds nothing to translate (only markup)"),
    ({"q": "\n\n   \n"}, "holds nothing to translate (only spaces)"),
    ({"q": "red " * 1300 + "dog."}, "characters a sentence (--max-characters)"),
    ({"q": "<b>" * 5000 + "red dog", "format": "html"}, "nests elements more than 400 deep"),
])
def test_texts_that_cannot_be_translated_are_a_400_naming_why(server, fields, message):
    answer = lt_post(server, **fields)
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    assert_alive(server)


@pytest.mark.parametrize("files, data, status, message", [
    ({"file": ("a.pdf", b"%PDF-1.4")}, {}, 400, ".pdf is not a format this server translates"),
    ({"file": ("a.txt", b"\xff\xfe r\x00")}, {}, 400, "a.txt is not UTF-8 text"),
    ({"file": ("a.txt", b"red dog")}, {"api_key": "wrong"}, 403, "Invalid API key"),
    ({"other": ("a.txt", b"red dog")}, {}, 400, "missing file parameter"),
    (None, {"q": "red"}, 400, "send the file as multipart/form-data"),
])
def test_translate_file_refuses_what_it_cannot_take(server, files, data, status, message):
    fields = {"source": "src", "target": "tgt", "api_key": KEY, **data}
    answer = httpx.post(server.url + "/translate_file", data=fields, files=files, timeout=60)
    assert answer.status_code == status and message in answer.json()["error"], answer.text
    assert httpx.get(server.url + "/download_file/nope/a.txt", timeout=10).status_code == 404
