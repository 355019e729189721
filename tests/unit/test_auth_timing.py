"""A password check takes the same time whether the user name exists or not, so its time
does not tell which names exist (core.auth.verify_password)."""

from __future__ import annotations

import statistics
import time

import bcrypt

from core import auth

COST = 10  # the dummy hash follows the users' cost; 10 keeps the test quick


def _config() -> dict:
    hashed = bcrypt.hashpw(b"right-password", bcrypt.gensalt(COST)).decode()
    return {"credentials": {"usernames": {"ana": {"password": hashed, "roles": ["viewer"]}}}}


def _median_s(config: dict, name: str, runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        assert not auth.verify_password(config, name, "wrong-password")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_unknown_and_known_names_take_the_same_time() -> None:
    config = _config()
    auth.verify_password(config, "nobody", "warm-up")  # the dummy hash is made once per cost
    known, unknown = _median_s(config, "ana"), _median_s(config, "nobody")
    # one bcrypt check each (~50 ms at cost 10); before, an unknown name took ~0 s
    assert unknown > 0.5 * known and known > 0.5 * unknown, (known, unknown)


def test_only_the_right_password_of_a_known_user_passes() -> None:
    config = _config()
    assert auth.verify_password(config, "ana", "right-password")
    assert not auth.verify_password(config, "nobody", "right-password")
    config["credentials"]["usernames"]["bob"] = {"password": "not-a-hash"}
    assert not auth.verify_password(config, "bob", "not-a-hash")
