"""report.html of run, comparison and sweep folders: written when a command ends, self-contained, its
numbers those of the folder's files; then in a real browser (headless chromium), where one is installed."""
import csv
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import cli, write_config

from skipexp.core import stats
from skipexp.rundir import files

# the tests share one module fixture (and one browser): on one xdist worker, they train it once
pytestmark = pytest.mark.xdist_group("html")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A comparison of two members over two seeds, and a sweep over kind x lr x seed, trained once
    in this process: {"run": one member's seed folder, "compare": ..., "sweep": ...}."""
    tmp = tmp_path_factory.mktemp("html")
    out = tmp / "runs"
    plain = write_config(tmp / "plain.yaml", {"name": "plain", "model.skip.kind": "none"})
    skip = write_config(tmp / "skip.yaml", {"name": "skip"})
    cli("compare", plain, skip, "seed=[0,1]", "--out", out, check=0)
    cdir = next(out.glob("compare-*"))
    base = write_config(tmp / "base.yaml")
    grid = ["model.skip.kind=none,identity", "train.lr=0.05,0.1", "seed=0,1"]
    cli("sweep", base, *grid, "--name", "t", "--out", out, "--list", check=0)   # writes sweep.yaml
    cli("sweep", out / "sweep-t" / "sweep.yaml", "--group", "1", "--out", out, check=0)
    cli("report", out / "sweep-t", check=0)
    return {"run": cdir / "runs" / "skip-seed1", "compare": cdir, "sweep": out / "sweep-t"}


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(path: Path) -> list[tuple[str, dict]]:
    p = _Tags()
    p.feed(path.read_text())
    return p.tags


def cells(path: Path) -> list[dict]:
    """Every table cell that carries a summary field: its attributes."""
    return [a for t, a in tags(path) if t == "td" and "data-field" in a]


def as_value(text: str):
    if text in ("nan", "inf", "-inf"):
        return float(text)
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def same(a, b) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("kind", ["run", "compare", "sweep"])
def test_every_report_is_one_file_that_fetches_nothing(folders, kind):
    page = folders[kind] / files.REPORT
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "default-src 'none'" in text   # the browser may fetch nothing
    for tag, attrs in tags(page):
        if "src" in attrs:
            assert attrs["src"].startswith("data:"), (tag, attrs["src"][:80])
        href = attrs.get("href", "")
        assert not re.match(r"^(https?:)?//", href), href   # links are relative, into the folder
        if href and not href.startswith("#"):
            assert (page.parent / href).exists(), href
    assert "<svg" in text and "chart-data" in text


def test_run_report_numbers_are_summary_json(folders):
    run = folders["run"]
    summary = json.loads((run / files.SUMMARY).read_text())
    got = {c["data-field"]: as_value(c["data-value"]) for c in cells(run / files.REPORT) if "data-value" in c}
    assert got and all(same(got[k], summary[k]) for k in got), (got, summary)
    assert {"final_test_acc", "steps", "grad_ratio_first_last_end"} <= set(got)


def test_compare_report_numbers_are_summary_json_with_the_seeds_interval(folders):
    cdir = folders["compare"]
    s = json.loads((cdir / files.SUMMARY).read_text())
    text = (cdir / files.REPORT).read_text()
    table = text[text.index('id="summary"'):text.index("</table>", text.index('id="summary"'))]
    for row in re.findall(r"<tr>(.*?)</tr>", table):
        found = re.findall(r'data-field="(\w+)"(?: data-value="([^"]*)")?', row)
        if not found:
            continue
        assert [f for f, _ in found] == [found[0][0]] * len(s["members"])   # one cell per member, in order
        for (field, v), m in zip(found, s["members"]):
            assert same(as_value(v), m["summary"].get(field)) if v else m["summary"].get(field) is None, field
    # under the mean of the final test accuracy, the seeds' 95 % t-interval from core.stats
    plain = s["members"][0]
    accs = [x["final_test_acc"] for x in plain["seed_summaries"]]
    ci = stats.summarize(accs)
    assert f"CI [{ci['ci_low']:.1%}, {ci['ci_high']:.1%}]" in text and "n = 2" in text
    # every member run links to its own report, which exists
    for m in s["members"]:
        for rel in m["runs"]:
            assert f'href="{rel}/report.html"' in text and (cdir / rel / files.REPORT).is_file()


def test_sweep_report_numbers_are_summary_seeds_csv(folders):
    root = folders["sweep"]
    with open(root / files.SUMMARY_SEEDS_CSV) as f:
        rows = list(csv.DictReader(f))
    text = (root / files.REPORT).read_text()
    for field in ("final_test_acc_mean", "final_train_loss_mean"):
        shown = [float(v) for v in re.findall(rf'data-field="{field}" data-value="([^"]+)"', text)]
        assert shown == [float(r[field]) for r in rows]
    # each configuration's row switches with the chips of its values
    assert 'data-keys="skip.kind=none train.lr=0.05"' in text and 'data-key="train.lr=0.1"' in text
    assert all((root / p.name / files.REPORT).is_file() for p in root.iterdir() if p.name.startswith("skip.kind="))


def test_log_html_false_writes_none_and_report_writes_it(tmp_path, tiny_config):
    cli("train", tiny_config, "log.html=false", "--run-dir", tmp_path / "r", check=0)
    assert not (tmp_path / "r" / files.REPORT).exists()
    cli("report", tmp_path / "r", "--no-html", check=0)
    assert not (tmp_path / "r" / files.REPORT).exists()
    cli("report", tmp_path / "r", check=0)
    assert (tmp_path / "r" / files.REPORT).is_file()


# --- in a real browser --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    """Headless chromium driven by selenium, one for the module; skips where either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("headless browser tests need chromium and chromedriver "
                    "(Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def open_page(browser, page: Path) -> None:
    browser.get_log("browser")
    browser.get_log("performance")   # drop what earlier pages left
    browser.get(page.resolve().as_uri())


@pytest.mark.parametrize("kind", ["run", "compare", "sweep"])
def test_page_loads_without_errors_or_requests_and_every_figure_renders(browser, folders, kind):
    page = folders[kind] / files.REPORT
    open_page(browser, page)
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert not errors, errors
    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    urls = {m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"}
    assert urls <= {page.resolve().as_uri()} | {u for u in urls if u.startswith("data:")}, urls
    sizes = browser.execute_script(
        "return [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        ".concat([...document.querySelectorAll('figure svg')].map(s => {const r = s.getBoundingClientRect();"
        " return [true, r.width, r.height]}))")
    assert sizes and all(ok and w > 0 and h > 0 for ok, w, h in sizes), sizes
    if kind in ("compare", "sweep"):   # the folder's own plots, inlined
        assert browser.execute_script("return document.images.length") >= 2


def test_summary_table_in_the_browser_shows_summary_json(browser, folders):
    run = folders["run"]
    summary = json.loads((run / files.SUMMARY).read_text())
    open_page(browser, run / files.REPORT)
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#summary td[data-field]')].map(td => [td.dataset.field, td.innerText])")
    assert len(shown) >= 10
    for field, text in shown:
        v = summary.get(field)
        if isinstance(v, float) and math.isfinite(v):
            number = float(text.strip().rstrip("%")) / (100 if text.strip().endswith("%") else 1)
            assert number == pytest.approx(v, rel=5e-3, abs=6e-4), (field, text, v)  # as rounded to show
        elif isinstance(v, int):
            assert text.strip() == str(v)


def test_a_member_chip_hides_its_lines_and_the_pointer_reads_values(browser, folders):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    open_page(browser, folders["compare"] / files.REPORT)
    plain = browser.find_elements(By.CSS_SELECTOR, 'g.series[data-keys~="member=plain"] path.line')
    skip = browser.find_elements(By.CSS_SELECTOR, 'g.series[data-keys~="member=skip"] path.line')
    assert plain and skip and all(e.is_displayed() for e in plain + skip)
    chip = browser.find_element(By.CSS_SELECTOR, '.chip[data-key="member=plain"]')
    chip.click()
    assert chip.get_attribute("aria-pressed") == "false"
    assert not any(e.is_displayed() for e in plain) and all(e.is_displayed() for e in skip)
    chip.click()
    assert all(e.is_displayed() for e in plain)

    svg = browser.find_element(By.CSS_SELECTOR, "#compare-loss svg")
    ActionChains(browser).move_to_element(svg).perform()   # the middle of the loss chart
    tip = browser.find_element(By.CSS_SELECTOR, "#compare-loss .tip")
    assert tip.is_displayed() and "plain: train (smoothed)" in tip.text and "skip" in tip.text
    assert re.search(r"step \d+", tip.text)
