import re

from conftest import REPO


def test_ci_runs_exactly_the_readme_commands():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", section)
    assert len(commands) == 2, commands
    assert "birdclef demo" in commands[0] and "pytest" in commands[1]
    for cmd in commands:
        assert cmd in ci, f"README command not run by .ci/run: {cmd}"
