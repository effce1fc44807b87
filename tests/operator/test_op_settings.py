"""The operator's one settings object: flags > MUTASK_* environment > defaults, bad input exits 2
naming the flag or variable, and --help shows every setting with its default."""

from __future__ import annotations

import dataclasses

import pytest

from mutask.operator import settings
from mutask.operator.settings import Settings


def test_precedence_flag_over_env_over_default() -> None:
    env = {"MUTASK_METRICS_PORT": "9100", "MUTASK_BACKOFF_LIMIT": "2", "MUTASK_VERBOSE": "true"}
    s = settings.load(["-A", "--metrics-port", "9200"], env)
    assert (s.metrics_port, s.backoff_limit, s.verbose) == (9200, 2, True)
    assert s.liveness_port == Settings.liveness_port == 8081
    assert settings.load(["-A"], {}).metrics_port == 8080


def test_every_type_parses_from_env() -> None:
    s = settings.load(
        [],
        {
            "MUTASK_NAMESPACES": "a, b",
            "MUTASK_RESYNC_SECONDS": "0.25",
            "MUTASK_PEERING_NAME": "mutask",
            "MUTASK_EXTRA_LABELS": "team=vision,tier=gold",
            "MUTASK_STANDALONE": "0",
        },
    )
    assert s.namespaces == ("a", "b") and s.resync_seconds == 0.25
    assert s.peering_name == "mutask" and s.standalone is False
    assert s.extra_labels == {"team": "vision", "tier": "gold"}


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["-A", "--metrics-port", "x"], {}, "--metrics-port='x'"),
        (["-A"], {"MUTASK_BACKOFF_LIMIT": "many"}, "MUTASK_BACKOFF_LIMIT='many'"),
        (["-A"], {"MUTASK_VERBOSE": "maybe"}, "MUTASK_VERBOSE='maybe'"),
        (["-A"], {"MUTASK_EXTRA_LABELS": "novalue"}, "MUTASK_EXTRA_LABELS='novalue'"),
        (["-A", "--liveness-port", "70000"], {}, "--liveness-port=70000"),
        (["-A", "--resync-seconds", "0"], {}, "--resync-seconds=0"),
        (["-A", "--watch-client-timeout", "10"], {}, "--watch-client-timeout=10"),
        # the API server's timeoutSeconds is an integer (it answers 400 to "300.0")
        (["-A"], {"MUTASK_WATCH_SERVER_TIMEOUT": "300.0"}, "MUTASK_WATCH_SERVER_TIMEOUT='300.0'"),
        (["-A", "--watch-server-timeout", "0"], {}, "--watch-server-timeout=0"),
        ([], {}, "--all-namespaces"),
        (["-A", "-n", "x"], {}, "--all-namespaces"),
        (["-A", "--no-such-flag"], {}, "--no-such-flag"),
    ],
)
def test_bad_input_exits_2_naming_it(
    argv: list[str], env: dict[str, str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        settings.load(argv, env)
    assert stop.value.code == 2
    assert named in capsys.readouterr().err


def test_help_lists_every_setting_with_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        settings.load(["--help"], {})
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(Settings):
        assert settings.env_name(f.name) in text, f.name
    assert "(default: 8080; env MUTASK_METRICS_PORT)" in text
    assert "(default: 9090; env MUTASK_TRAINER_METRICS_PORT)" in text


def test_watch_timeouts_reach_kopf_as_the_api_server_reads_them() -> None:
    """kopf sends ``timeoutSeconds=str(server_timeout)``: it must read "300", never "300.0"."""
    from mutask.operator.main import kopf_settings

    s = settings.load(["-A", "--watch-server-timeout", "120", "--watch-client-timeout", "150"], {})
    watching = kopf_settings(s).watching
    assert str(watching.server_timeout) == "120"
    assert (watching.client_timeout, watching.connect_timeout) == (150.0, 10.0)
    assert str(kopf_settings(settings.load(["-A"], {})).watching.server_timeout) == "300"
