"""§1.12: --config plus --config-dir, merged, each file with its own env pass."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from llamaswap.config import ConfigError, ConfigProblem, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(main: Path | None, directory: Path | None, **environ: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(main, config_dir=directory, environ=environ)
    return info.value.problems


def test_file_then_dir_files_in_name_order(tmp_path: Path) -> None:
    main = write(
        tmp_path / "config.yaml",
        """
        macros: {srv: /opt/srv}
        apiKeys: [main]
        models:
          a: {cmd: "${srv} a", proxy: "http://h:1"}
        """,
    )
    conf = tmp_path / "conf.d"
    write(
        conf / "20-b.yml",
        """
        apiKeys: [twenty]
        models:
          b: {cmd: "${srv} ${more}", proxy: "http://h:2"}
        """,
    )
    write(
        conf / "10-macros.yaml",
        """
        macros: {more: "--more"}
        apiKeys: [ten]
        """,
    )
    write(conf / "ignored.txt", "not: yaml: at all")
    write(conf / "sub" / "nested.yaml", "models: {nested: {cmd: x}}")
    config = load_config(main, config_dir=conf, environ={})
    assert config.api_keys == ["main", "ten", "twenty"]  # lists concatenate in order
    assert config.models["b"].cmd == "/opt/srv --more"  # macros from several files combine
    assert set(config.models) == {"a", "b"}  # not recursive
    assert config.sources == [str(main), str(conf / "10-macros.yaml"), str(conf / "20-b.yml")]


def test_dir_only(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "models: {a: {cmd: srv, proxy: 'http://h:1'}}")
    write(tmp_path / "empty.yaml", "# nothing here\n")
    config = load_config(None, config_dir=tmp_path, environ={})
    assert list(config.models) == ["a"]


def test_all_sources_empty_is_an_empty_config(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "")
    write(tmp_path / "b.yaml", "# only comments\n")
    assert load_config(None, config_dir=tmp_path, environ={}).models == {}


def test_env_macros_are_per_file(tmp_path: Path) -> None:
    main = write(tmp_path / "main.yaml", "apiKeys: ['${env.K}']\n")
    write(tmp_path / "d" / "x.yaml", "apiKeys: ['${env.K}-2']\n")
    config = load_config(main, config_dir=tmp_path / "d", environ={"K": "key"})
    assert config.api_keys == ["key", "key-2"]


def test_equal_scalars_and_nulls_merge(tmp_path: Path) -> None:
    main = write(tmp_path / "main.yaml", "globalTTL: 60\nstartPort: ~\nlogLevel: debug\n")
    write(tmp_path / "d" / "x.yaml", "globalTTL: 60\nstartPort: 7000\nlogLevel: ~\n")
    config = load_config(main, config_dir=tmp_path / "d", environ={})
    assert (config.global_ttl, config.start_port, config.log_level) == (60, 7000, "debug")


@pytest.mark.parametrize(
    ("main_text", "dir_text", "path", "fragment", "line"),
    [
        ("globalTTL: 60\n", "globalTTL: 30\n", "globalTTL", "sets a different value", 1),
        ("globalTTL: 60\n", "globalTTL: '60'\n", "globalTTL", "sets a different value", 1),
        ("apiKeys: [a]\n", "apiKeys: {a: 1}\n", "apiKeys", "incompatible YAML node kinds", 1),
        (
            "models:\n  a: {cmd: x, proxy: 'http://h:1'}\n",
            "\nmodels:\n  a: {cmd: y, proxy: 'http://h:1'}\n",
            "models.a",
            'duplicate models "a"',
            3,
        ),
        (
            "peers: {p: {proxy: 'http://h:1', models: [m]}}\n",
            "peers: {p: {proxy: 'http://h:1', models: [m]}}\n",
            "peers.p",
            'duplicate peers "p"',
            1,
        ),
        (
            "routing: {router: {settings: {groups: {g: {members: []}}}}}\n",
            "routing: {router: {settings: {groups: {g: {members: []}}}}}\n",
            "routing.router.settings.groups.g",
            'duplicate groups "g"',
            1,
        ),
    ],
)
def test_merge_conflicts_point_at_the_later_file(
    tmp_path: Path, main_text: str, dir_text: str, path: str, fragment: str, line: int
) -> None:
    main = write(tmp_path / "main.yaml", main_text)
    later = write(tmp_path / "d" / "later.yaml", dir_text)
    [problem] = problems_of(main, tmp_path / "d")
    assert (problem.path, problem.source, problem.line) == (path, str(later), line)
    assert fragment in problem.message


def test_problems_in_merged_files_name_their_own_file_and_line(tmp_path: Path) -> None:
    main = write(tmp_path / "main.yaml", "models:\n  a: {cmd: srv, proxy: 'http://h:1'}\n")
    other = write(
        tmp_path / "d" / "b.yaml",
        "\n\nmodels:\n  b:\n    cmd: srv\n    proxy: http://h:2\n    ttl: -5\n",
    )
    [problem] = problems_of(main, tmp_path / "d")
    assert str(problem) == f"{other}:7: models.b.ttl: invalid TTL value -5"


def test_same_file_in_config_and_dir_is_an_error(tmp_path: Path) -> None:
    main = write(tmp_path / "main.yaml", "globalTTL: 1\n")
    [problem] = problems_of(main, tmp_path)
    assert "is also present in --config-dir" in problem.message


@pytest.mark.parametrize(
    ("main", "directory", "fragment"),
    [
        (None, None, "at least one of --config or --config-dir must be provided"),
        ("nope.yaml", None, "cannot read config"),
        (None, "nope", "--config-dir"),
        (None, ".", "no configuration sources found"),
    ],
)
def test_source_errors(
    tmp_path: Path, main: str | None, directory: str | None, fragment: str
) -> None:
    [problem] = problems_of(
        tmp_path / main if main else None, tmp_path / directory if directory else None
    )
    assert fragment in problem.message


def test_yaml_errors_in_every_file_are_all_reported(tmp_path: Path) -> None:
    main = write(tmp_path / "main.yaml", "a: [1\n")
    write(tmp_path / "d" / "x.yaml", "b: {2\n")
    found = problems_of(main, tmp_path / "d")
    assert len(found) == 2
    assert all("invalid YAML" in p.message for p in found)
