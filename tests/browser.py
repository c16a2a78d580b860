"""A real headless browser (Debian's chromium) opening a page at a laptop's window size: what it
measured of the page once loaded (images, overflow, tables) and a screenshot of the first screen."""

import html
import json
import os
import shutil
import subprocess

import pytest

LAPTOP = (1366, 768)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# headless, as root in a container (no sandbox), and quiet on a closed network: without the
# networking flags chromium's start-up connections are refused here and the page does not load
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")

# Run at the page's load event (every image decoded or failed): its measures, into a <pre> that
# --dump-dom prints with the page.
CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const tables = [...document.querySelectorAll("table")];
  const width = window.innerWidth;
  const inside = (el) => el.getBoundingClientRect().right <= width + 0.5;
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const cells = [...document.querySelectorAll("td, th")].map((c) => parseFloat(getComputedStyle(c).fontSize));
  const measures = {
    title: document.title,
    inner_width: width,
    scroll_width: document.documentElement.scrollWidth,
    images: images.length,
    images_loaded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    images_inside: images.filter(inside).length,
    tables: tables.length,
    tables_in_a_scroll_box_inside_the_page: tables.filter((t) => scrolls(t.parentElement) && inside(t.parentElement)).length,
    smallest_cell_font_px: cells.length ? Math.min(...cells) : null,
  };
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify(measures);
  document.body.appendChild(out);
});
</script>
"""


def browser_or_skip() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no headless browser: none of {', '.join(BROWSERS)} is on PATH "
                "(Debian: apt-get install chromium, which .ci/run does as root)")


def _run(browser: str, workdir: str, *args: str) -> str:
    p = subprocess.run([browser, *FLAGS, f"--user-data-dir={os.path.join(workdir, 'profile')}",
                        f"--window-size={LAPTOP[0]},{LAPTOP[1]}", *args], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def open_page(page: str, workdir: str, screenshot: bool = True) -> tuple[dict, str | None]:
    """(what the browser measured of `page` once loaded, the path of its screenshot at LAPTOP size, or
    None without one). The measures come from a copy of the page with CHECK appended; the screenshot
    is of the page itself (a second start of the browser)."""
    browser = browser_or_skip()
    os.makedirs(workdir, exist_ok=True)
    text = open(page, encoding="utf-8").read()
    assert text.count("</body>") == 1
    checked = os.path.join(workdir, "checked.html")
    with open(checked, "w", encoding="utf-8") as f:
        f.write(text.replace("</body>", CHECK + "</body>"))
    dom = _run(browser, workdir, "--dump-dom", f"file://{checked}")
    start = dom.find('<pre id="browser-check">')
    assert start >= 0, f"the page did not finish loading in the browser:\n{dom[-2000:]}"
    measures = json.loads(html.unescape(dom[start + len('<pre id="browser-check">'):dom.index("</pre>", start)]))
    if not screenshot:
        return measures, None
    path = os.path.join(workdir, "paper.png")
    _run(browser, workdir, f"--screenshot={path}", f"file://{os.path.abspath(page)}")
    return measures, path
