"""components.shell: the one quoting function and the one template convention (`@name@`)."""

from __future__ import annotations

import subprocess

import pytest

from components.shell import TEMPLATES, fill, piece, q, script


def test_q_makes_one_word_of_anything() -> None:
    hostile = "a b'c\"$(touch /tmp/x)`;\n*"
    out = subprocess.run(["sh", "-c", f"printf '%s' {q(hostile)}"], capture_output=True, text=True, check=True)
    assert out.stdout == hostile
    assert q(8065) == "8065" and q("") == "''"


def test_fill_replaces_every_placeholder_once() -> None:
    assert fill("a=@a@ b=@b@ a=@a@", {"a": "1", "b": "@a@"}) == "a=1 b=@a@ a=1"
    assert fill("mail user@example.com; location @named {", {}) == "mail user@example.com; location @named {"


@pytest.mark.parametrize(
    ("text", "values", "match"),
    [("a @x@ @y@", {"x": "1"}, "missing \\['y'\\]"), ("a @x@", {"x": "1", "z": "2"}, "unused \\['z'\\]")],
)
def test_fill_refuses_a_missing_or_unused_value(text: str, values: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fill(text, values)


def test_script_quotes_values_and_keeps_code(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("components.shell.TEMPLATES", tmp_path)
    (tmp_path / "t.sh").write_text("v=@v@\n@body@\n")
    assert script("t.sh", code={"body": "echo \"$v\""}, v="a b") == "v='a b'\necho \"$v\"\n"
    with pytest.raises(ValueError, match="both"):
        script("t.sh", code={"v": "x", "body": ""}, v="y")


def test_an_empty_piece_alone_on_its_line_takes_the_line_with_it() -> None:
    """An optional piece leaves no blank line where it is absent (so a script reads byte for byte
    as before); an empty value anywhere else is only an empty value."""
    text = "a\n@opt@\nb @v@\n  @inner@\n"
    assert fill(text, {"opt": "", "v": "", "inner": ""}) == "a\nb \n  \n"
    assert fill(text, {"opt": "x\ny", "v": "1", "inner": "2"}) == "a\nx\ny\nb 1\n  2\n"
    assert fill("@opt@\n@opt@\n", {"opt": ""}) == ""


def test_piece_is_a_filled_template_without_its_last_newline(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("components.shell.TEMPLATES", tmp_path)
    (tmp_path / "p.sh").write_text("echo @v@\n@more@\n")
    assert piece("p.sh", code={"more": ""}, v="a b") == "echo 'a b'"
    assert script("p.sh", code={"more": "x"}, v=1) == "echo 1\nx\n"


def test_script_takes_a_value_called_name(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("components.shell.TEMPLATES", tmp_path)
    (tmp_path / "n.sh").write_text("echo @name@\n")
    assert script("n.sh", name="db x") == "echo 'db x'\n"


def test_templates_use_only_the_one_convention() -> None:
    for path in TEMPLATES.iterdir():
        text = path.read_text()
        assert "{{" not in text and "${" + "binary}" not in text, f"{path.name}: placeholders are @name@"


SCRIPT_WITH_COMMENTS = r"""set -eu
# a comment with an apostrophe: don't
x=1 # a comment after a command
cat <<'EOF'
# a here-document's line
EOF
cat <<EOT >/dev/null
# another, unquoted terminator
EOT
awk '
# an awk program comment
{ print }' </dev/null
echo "a message
# over two lines"
echo a \
  # a continued line (it is the comment of echo's line)
  # dropped
	# shellcheck disable=SC2086
y=$((1 << 2))
z="${x#1}" # z is empty
python3 - <<-PY 2>/dev/null || true
	# Python's comment
	PY
# dropped too
echo "end $y$z"
"""


def test_comment_lines_go_and_everything_else_stays() -> None:
    from components.shell import without_comment_lines

    out = without_comment_lines(SCRIPT_WITH_COMMENTS)
    kept = [
        "x=1 # a comment after a command",
        "# a here-document's line",
        "# another, unquoted terminator",
        "# an awk program comment",
        "# over two lines\"",
        "  # a continued line (it is the comment of echo's line)",
        "\t# shellcheck disable=SC2086",
        "\t# Python's comment",
    ]
    for line in kept:
        assert line in out.split("\n"), line
    for gone in ("don't", "  # dropped", "# dropped too"):
        assert gone not in out
    # only comment lines went, in order
    lines = SCRIPT_WITH_COMMENTS.split("\n")
    assert [line for line in lines if line not in out.split("\n")] == [
        "# a comment with an apostrophe: don't",
        "  # dropped",
        "# dropped too",
    ]
    for shell in ("/bin/sh", "/bin/bash"):
        a = subprocess.run([shell, "-c", SCRIPT_WITH_COMMENTS], capture_output=True, text=True, timeout=30)
        b = subprocess.run([shell, "-c", out], capture_output=True, text=True, timeout=30)
        assert a.returncode == b.returncode == 0 and a.stdout == b.stdout and "end 4" in a.stdout, (a, b)


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.sh")))
def test_every_template_without_its_comment_lines_parses_and_loses_only_comments(name: str) -> None:
    from components.shell import without_comment_lines

    text = (TEMPLATES / name).read_text()
    out = without_comment_lines(text)
    removed = [line for line in text.split("\n") if line not in out.split("\n")]
    assert all(line.lstrip().startswith("#") for line in removed), removed
    assert subprocess.run(["/bin/sh", "-n", "-c", out], capture_output=True, timeout=30).returncode == 0
