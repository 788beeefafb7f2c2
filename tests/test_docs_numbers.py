"""Hand-written prose quotes no measured number.

The project rule: a number quoted in a doc is produced by the code that generates the
doc, or asserted by a test against it; never typed by hand. This test reads the
hand-written parts of the pages below (everything outside the generated blocks) and fails
on a decimal number with a fractional part (``0.73``, ``12.5``) in their prose. Excluded:
code spans and fenced code blocks (commands, settings, formulas), link targets, markdown
table rows (a page's tables are either the generator's output or a specification; the
generative page's tables are copies of the experiment's own ``results.md``/``summary.md``/
``search.md``, which ``ieu_jax.generative.report`` writes), and the configuration values
of ``ALLOWED``, each with its reason.
"""

from __future__ import annotations

import os
import re

import pytest

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")

PAGES = ["generative.md", "results.md", "results_nonorm.md", "theory.md", "cifar10.md"]

# Generated blocks: (start marker, end marker). Everything between them is written by code.
BLOCKS = [("<!-- generated: start -->", "<!-- generated: end -->"),
          ("<!-- frontier: start -->", "<!-- frontier: end -->"),
          ("<!-- ulira: start -->", "<!-- ulira: end -->")]

# Configuration values and definitions that prose may name, per page, with the reason.
ALLOWED: dict[str, dict[str, str]] = {
    "generative.md": {
        "0.8": "setting: generator RCD's criterion, 0.8 times the original's forget rate"
               " (rcd.threshold_fraction)",
        "0.012": "setting: SalUn's retain_scale at 16x16 (the default config)",
        "0.048": "setting: SalUn's retain_scale at 8x8 (the :small config)",
        "0.5": "setting: SalUn's mask_fraction (the reference's hard-coded 0.5)",
    },
    "results.md": {},
    "results_nonorm.md": {},
    "theory.md": {},
    # cifar10.md's table of published numbers is a table (quoted papers, not our code).
    "cifar10.md": {"0.9": "setting: every baseline's SGD momentum (cifar10_resnet18 config)"},
}

_NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.]*\d)")
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")


def hand_written(text: str) -> str:
  """The page without its generated blocks (an unclosed block runs to the end)."""
  for start, end in BLOCKS:
    out, rest = [], text
    while start in rest:
      before, _, after = rest.partition(start)
      out.append(before)
      _, found, rest = after.partition(end)
      if not found:
        rest = ""
    out.append(rest)
    text = "".join(out)
  return text


def prose(text: str) -> str:
  """Hand-written text without code blocks, code spans, link targets and table rows."""
  text = _FENCE.sub("", hand_written(text))
  text = _CODE_SPAN.sub("", text)
  text = _LINK_TARGET.sub("]", text)
  return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))


def decimals_in_prose(text: str, allowed=()) -> list[tuple[int, str, str]]:
  """(line number in the stripped prose, number, line) of each decimal not in ``allowed``."""
  found = []
  for i, line in enumerate(prose(text).splitlines(), 1):
    for m in _NUMBER.finditer(line):
      if m.group() not in allowed:
        found.append((i, m.group(), line.strip()))
  return found


def test_checker_flags_a_measured_number_in_prose():
  page = ("# Page\n\nIEU forgets the class.\n\n<!-- generated: start -->\n| IEU | 0.73 |\n"
          "IEU's forget rate: 0.73.\n<!-- generated: end -->\n")
  assert decimals_in_prose(page) == []
  bad = page + "\nIEU's forget rate is 12.5% against Retrain's 0.0%.\n"
  assert [n for _, n, _ in decimals_in_prose(bad)] == ["12.5", "0.0"]
  # The same numbers in a frontier block, a code span, a fence, a link or a table are fine.
  fine = (page + "<!-- frontier: start -->\nforget 12.5\n<!-- frontier: end -->\n"
          "<!-- ulira: start -->\nchance 50.18\n<!-- ulira: end -->\n"
          "Run with `--config.lr=0.03`.\n```\nlr = 0.03\n```\n[paper](https://arxiv.org/abs/2310.12508)\n"
          "| a | 12.5 |\n")
  assert decimals_in_prose(fine) == []
  # An unclosed generated block hides the rest of the page; a number before it still fails.
  assert [n for _, n, _ in decimals_in_prose("took 3.5 s\n<!-- generated: start -->\n1.5")] == ["3.5"]
  assert decimals_in_prose(bad, allowed={"12.5", "0.0"}) == []


@pytest.mark.parametrize("page", PAGES)
def test_hand_written_prose_quotes_no_decimal(page):
  path = os.path.join(DOCS, page)
  if not os.path.exists(path):
    pytest.skip(f"docs/{page} does not exist yet")
  with open(path) as f:
    found = decimals_in_prose(f.read(), ALLOWED[page])
  assert not found, (f"docs/{page}: numbers typed by hand in prose (generate them or move them"
                     " into a table the code writes):\n" + "\n".join(
                         f"  {n}: {line}" for _, n, line in found))


def test_generative_allowed_settings_are_the_config():
  """The settings generative.md may quote are the config's own values."""
  from experiments.configs import ddpm_fashion_mnist  # pylint: disable=g-import-not-at-top

  default, small = ddpm_fashion_mnist.get_config(""), ddpm_fashion_mnist.get_config("small")
  assert default.rcd.threshold_fraction == small.rcd.threshold_fraction == 0.8
  assert round(default.method.SalUn["retain_scale"], 3) == 0.012
  assert round(small.method.SalUn["retain_scale"], 3) == 0.048
  assert default.method.SalUn["mask_fraction"] == small.method.SalUn["mask_fraction"] == 0.5


def test_cifar10_allowed_setting_is_the_config():
  from experiments.configs import cifar10_resnet18  # pylint: disable=g-import-not-at-top

  c = cifar10_resnet18.get_config()
  assert {c.method[m]["momentum"] for m in ("FT", "GA", "RL", "SalUn", "l1-sparse")} == {0.9}
