"""The README's example runs exactly as written, and does what it says."""

import contextlib
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
  text = README.read_text()
  block = re.search(
      r"<!-- example: start -->\s*```python\n(.*?)```\s*<!-- example: end -->", text, re.S
  )
  assert block, "README.md lost its example block"
  return block.group(1)


@pytest.mark.slow
def test_readme_example_runs_and_forgets():
  out = io.StringIO()
  namespace = {}
  with contextlib.redirect_stdout(out):
    exec(compile(_example(), str(README), "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["before"] >= 90.0  # the model learned the forget set ...
  assert namespace["after"] < namespace["before"] - 20  # ... and IEU removed it
  assert "forget accuracy" in out.getvalue() and "RCDSummary" in out.getvalue()
  assert namespace["result"].first_hit.shape == (4,)
