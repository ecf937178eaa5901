"""Rule digests derived from what each workflow script imports (xmc.code_digest)."""
import re
import textwrap
from pathlib import Path

import pytest

from xmc.code_digest import digest, module_files

REPO = Path(__file__).resolve().parents[1]
# Rules that carry no digest, and why: download's output is the source's files, fixed by the source
# and its sha256 (a readers edit must not fetch a large dataset again).
NO_DIGEST = {"download"}


def write(root: Path, files: dict) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def package(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": "def load():\n    from pkg.heavy import thing  # lazy: only when load() runs\n",
        "pkg/a.py": "def f():\n    from pkg.sub import b  # inside a function: still runs\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "from .c import helper\nfrom . import d\n",
        "pkg/sub/c.py": "import numpy\nfrom pkg import _ext\nhelper = 1\n",
        "pkg/_ext.c": "int f(void) { return 1; }\n",  # a compiled module, counted by its source
        "pkg/sub/d.py": "",
        "pkg/heavy.py": "thing = 1\n",
        "pkg/unrelated.py": "x = 1\n",
        "script.py": "import numpy as np\nfrom pkg.a import f\n",
    })
    return tmp_path


def test_module_files_follow_imports_transitively(package):
    got = [p.relative_to(package / "pkg").as_posix() for p in module_files(package / "script.py", package / "pkg", "pkg")]
    assert got == ["__init__.py", "_ext.c", "a.py", "sub/__init__.py", "sub/b.py", "sub/c.py", "sub/d.py"]


def test_digest_changes_with_every_reached_module_and_only_those(package):
    before = digest(package / "script.py", package / "pkg", "pkg")
    assert digest(package / "script.py", package / "pkg", "pkg") == before
    for name in ("unrelated.py", "heavy.py"):  # not run by the script
        (package / "pkg" / name).write_text("changed = 2\n")
        assert digest(package / "script.py", package / "pkg", "pkg") == before, name
    for name in ("sub/c.py", "sub/d.py", "_ext.c", "__init__.py", "script.py"):
        path = package / ("pkg/" + name if name != "script.py" else name)
        path.write_text(path.read_text() + "# edited\n")
        after = digest(package / "script.py", package / "pkg", "pkg")
        assert after != before, name
        before = after


def _rule_scripts() -> dict:
    """rule -> (the script it runs, the script its code_version names, the rule it copies) from rules/*.smk."""
    blocks, scripts = [], {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        for m in re.finditer(r"^\s*(?:rule (\w+):|use rule (\w+) as (\w+) with:)\n(.*?)(?=^\s*(?:rule |use rule |if |else:)|\Z)",
                             path.read_text(), re.M | re.S):
            name, parent, body = m.group(1) or m.group(3), m.group(2), m.group(4)
            script = re.search(r'script:\s*\n\s*"\.\./workflow_scripts/(\w+\.py)"', body)
            if script:
                scripts[name] = script.group(1)
            elif "workflow_scripts/peer.py" in body:  # the peers' shell rules run it
                scripts[name] = "peer.py"
            code = re.search(r'code=code_version\("(\w+\.py)"\)', body)
            blocks.append((name, parent, code.group(1) if code else None))
    return {name: (scripts.get(name) or scripts.get(parent), code, parent) for name, parent, code in blocks}


def test_every_rule_digests_its_own_script():
    rules = _rule_scripts()
    assert len(rules) >= 30 and NO_DIGEST <= set(rules)
    for name, (script, code, parent) in rules.items():
        if script is None or name in NO_DIGEST:
            continue
        if code is None:  # a `use rule ... with:` that keeps the params of the rule it copies
            assert parent is not None and rules[parent][1] == script, name
        else:
            assert code == script, f"rule {name} runs {script} but digests {code}"


def test_the_modules_a_rule_reaches_only_through_others_are_in_its_digest():
    """The stale reruns the hand-written lists allowed: predict_ranker reaches metrics (through
    ranker) and parallel (through linear)."""
    names = lambda script: {p.relative_to(REPO / "xmc").as_posix()
                            for p in module_files(REPO / "workflow_scripts" / script, REPO / "xmc")}
    assert {"ranker.py", "linear.py", "metrics.py", "parallel.py"} <= names("predict_ranker.py")
    assert {"indexing.py", "parallel.py"} <= names("cluster.py")
    assert "bundle.py" not in names("train_ranker.py")  # xmc/__init__'s lazy import is not followed
