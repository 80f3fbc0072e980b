"""Report's Jupyter display: the HTML report in an iframe, escaped once more as its
srcdoc attribute; and the Markdown one."""

import json
from html.parser import HTMLParser

from torch import nn

import flopgraph
from flopgraph.render.html import render_html
from flopgraph.render.markdown import render_markdown


class Frames(HTMLParser):
    """The tags and iframe attributes of a fragment, as a browser parses them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.frames: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "iframe":
            self.frames.append(dict(attrs))


def odd_model() -> nn.Module:
    """A model whose class and module names need escaping in HTML."""
    model = type("Net<&>", (nn.Sequential,), {})()
    model.add_module("blk<1>", nn.Linear(4, 3))
    model.add_module('q"&', nn.ReLU())
    return model.eval()


def test_repr_html_is_one_iframe_holding_the_page():
    report = flopgraph.analyze(odd_model(), (2, 4))
    fragment = report._repr_html_()
    parser = Frames()
    parser.feed(fragment)
    assert parser.tags == ["iframe"]  # nothing of the page leaks into the notebook
    (frame,) = parser.frames
    assert frame["sandbox"] == "allow-scripts"
    page = frame["srcdoc"]
    assert page == render_html(report)  # escaped exactly once, as an attribute value
    assert page.startswith("<!DOCTYPE html>") and "<script>" in page
    # totals: linear [2, 4] -> [2, 3]: 24 MACs, 48 + 6 bias FLOPs; relu 6
    assert "<dt>FLOPs</dt><dd>60 · " in page and "<dt>MACs</dt><dd>24</dd>" in page
    assert "<h1>flopgraph: Net&lt;&amp;&gt;</h1>" in page
    data = json.loads(page.split('id="flopgraph-data">')[1].split("</script>")[0])
    names = [c["name"] for c in data["tree"]["children"]]
    assert names == ["blk<1>", 'q"&'] and "blk<1>" not in page  # inside the script: \\u003c
    assert frame["title"] == "flopgraph report: Net<&>"


def test_repr_markdown_is_the_markdown_report():
    report = flopgraph.analyze(odd_model(), (2, 4))
    assert report._repr_markdown_() == render_markdown(report)
