"""Rule digests derived from what each workflow script imports (xmc.code_digest)."""
import re
import shutil
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
        path.write_text(path.read_text() + ("edited = 1\n" if name.endswith(".py") else "/* edited */\n"))
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


def test_comments_docstrings_and_layout_do_not_count_but_every_token_does(package):
    """A Python module counts by its code: a comment, a docstring or a reflow changes nothing; one
    token changes the digest (a string that is not a docstring is code). The C source counts by its
    bytes, comments included."""
    code = package / "pkg" / "sub" / "c.py"
    code.write_text('"""Helpers."""\nimport numpy\nfrom pkg import _ext\n\n\ndef g(x):\n    """Double."""\n'
                    '    return x * 2\n\n\nhelper = "one"\n')
    before = digest(package / "script.py", package / "pkg", "pkg")
    for text in (  # the same code
        '"""Helpers, reworded\nover two lines."""\nimport numpy  # why\nfrom pkg import _ext\n'
        'def g(x):\n    return (x *\n            2)\n# a comment\nhelper = \'one\'\n',
        'import numpy\nfrom pkg import _ext\ndef g(x):\n    """Only a docstring changed."""\n    return x*2\nhelper = "one"\n',
    ):
        code.write_text(text)
        assert digest(package / "script.py", package / "pkg", "pkg") == before, text
    for text in (  # one token each
        'import numpy\nfrom pkg import _ext\ndef g(x):\n    return x * 3\nhelper = "one"\n',
        'import numpy\nfrom pkg import _ext\ndef g(y):\n    return y * 2\nhelper = "one"\n',
        'import numpy\nfrom pkg import _ext\ndef g(x):\n    return x * 2\nhelper = "two"\n',
    ):
        code.write_text(text)
        assert digest(package / "script.py", package / "pkg", "pkg") != before, text
    code.write_text('import numpy\nfrom pkg import _ext\ndef g(x):\n    return x * 2\nhelper = "one"\n')
    assert digest(package / "script.py", package / "pkg", "pkg") == before
    (package / "pkg" / "_ext.c").write_text("/* a comment */ int f(void) { return 1; }\n")
    assert digest(package / "script.py", package / "pkg", "pkg") != before


def _workflow_digests(code: Path) -> dict:
    """script -> its digest, for every workflow script, in a copy ``code`` of the repository."""
    return {script.name: digest(script, code / "xmc") for script in sorted((code / "workflow_scripts").glob("*.py"))}


def test_a_docstring_edit_changes_no_rule_and_a_token_edit_exactly_the_rules_that_reach_it(tmp_path):
    """On a copy of the real workflow: rewriting xmc/io.py's docstrings and comments leaves every
    rule's ``code`` param as it was (Snakemake replans nothing); changing one token of xmc/metrics.py
    changes the param of exactly the scripts that reach that module."""
    for name in ("workflow_scripts", "xmc"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    before = _workflow_digests(tmp_path)
    io = tmp_path / "xmc" / "io.py"
    text = io.read_text()
    edited = text.replace('"""Atomic file outputs', '"""Atomic (all or nothing) file outputs', 1)
    edited = edited.replace("\nimport json\n", "\nimport json  # the run log and the manifests\n", 1)
    assert edited.count('"""') == text.count('"""') and edited != text
    io.write_text(edited)
    assert _workflow_digests(tmp_path) == before

    metrics = tmp_path / "xmc" / "metrics.py"
    text = metrics.read_text()
    assert text.count("dtype=np.int64") > 1
    metrics.write_text(text.replace("dtype=np.int64", "dtype=np.int32", 1))  # one token
    after = _workflow_digests(tmp_path)
    changed = {name for name in before if after[name] != before[name]}
    reaching = {name for name in before
                if metrics in module_files(tmp_path / "workflow_scripts" / name, tmp_path / "xmc")}
    assert changed == reaching
    assert {"evaluate.py", "predict_ranker.py"} <= changed and "prepare.py" not in changed
