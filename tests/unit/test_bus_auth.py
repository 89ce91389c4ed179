"""The permission model shared.bus.auth derives from the catalog, and the credential helpers
the embedded runtime and the CLI use; no server here (tests/integration/test_bus_auth.py)."""

from __future__ import annotations

import json
import stat

import pytest
import typer
from Crypto.Protocol.KDF import bcrypt_check
from pydantic import SecretStr

from shared.bus.auth import (
    PULL_INBOX,
    bcrypt_hash,
    ensure_credentials,
    permissions,
    permissions_for,
    render_conf,
)
from shared.bus.broker import BusCredentials, connect_options, inbox_prefix
from shared.cli.common import mask_nats_url, nats_url_as


def test_a_service_gets_exactly_its_events_and_its_own_consumers():
    grants = permissions("trainer")
    durable = "DISTILLERY.trainer--dataset-published-v1"
    assert set(grants.publish) == {
        "distillery.training.progressed.v1",
        "distillery.training.completed.v1",
        "distillery.cycle.failed.v1",
        "distillery.deadletter.recorded.v1",
        "$JS.API.STREAM.INFO.DISTILLERY",
        "$JS.API.STREAM.CREATE.DISTILLERY",
        f"$JS.API.CONSUMER.INFO.{durable}",
        f"$JS.API.CONSUMER.CREATE.{durable}.distillery.dataset.published.v1",
        f"$JS.API.CONSUMER.MSG.NEXT.{durable}",
        f"$JS.ACK.{durable}.>",
    }
    # Its deliveries come to its own inbox: no `_INBOX.>`, which would show it everyone's.
    assert set(grants.subscribe) == {"distillery.dataset.published.v1", "_INBOX_trainer.>"}
    assert PULL_INBOX not in grants.subscribe


def test_ops_administers_the_stream_and_ingest_only_feeds_traffic_in():
    ops = permissions("ops")
    assert "distillery.task.registered.v1" in ops.publish
    assert "$JS.API.STREAM.UPDATE.DISTILLERY" in ops.publish
    assert not [g for g in ops.publish if "CONSUMER" in g or "DELETE" in g or "PURGE" in g]
    assert ops.subscribe == ("_INBOX.>",)
    ingest = permissions("ingest")
    assert set(ingest.publish) == {
        "distillery.traffic.logged.v1",
        "distillery.feedback.recorded.v1",
    }
    assert ingest.subscribe == ("_INBOX_ingest.>",)


def test_an_unknown_name_is_not_an_identity_but_an_unlisted_service_gets_its_own_user():
    with pytest.raises(KeyError, match="not a bus identity"):
        permissions("ledger")
    unlisted = permissions_for("ledger")
    assert "distillery.>" in unlisted.publish
    assert not [g for g in unlisted.publish if "UPDATE" in g or "DELETE" in g or "PURGE" in g]
    assert "_INBOX_ledger.>" in unlisted.subscribe


def test_the_conf_is_sorted_and_quotes_subjects():
    conf = render_conf({"trainer": '"$2a$04$x"', "ops": "$NATS_PASSWORD_OPS"})
    assert conf.index('user: "ops"') < conf.index('user: "trainer"')
    assert "password: $NATS_PASSWORD_OPS\n" in conf
    assert '"$JS.ACK.DISTILLERY.trainer--dataset-published-v1.>"' in conf


def test_credentials_are_made_once_owner_only_and_hashed(tmp_path):
    made = ensure_credentials(tmp_path, "synth-data")
    path = tmp_path / "credentials" / "synth-data.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ensure_credentials(tmp_path, "synth-data") == made
    assert "*" in repr(made) and made.password.get_secret_value() not in repr(made)
    assert made.bcrypt.startswith("$2a$")
    bcrypt_check(made.password.get_secret_value().encode(), made.bcrypt.encode())
    assert json.loads(path.read_text())["user"] == "synth-data"


def test_bcrypt_hash_verifies_and_is_salted():
    first, second = bcrypt_hash("secret", cost=4), bcrypt_hash("secret", cost=4)
    assert first != second
    bcrypt_check(b"secret", first.encode())


def test_each_identity_replies_under_its_own_inbox():
    assert inbox_prefix("trainer") == "_INBOX_trainer"
    assert inbox_prefix("ops") == inbox_prefix(None) == "_INBOX"
    creds = BusCredentials("trainer", SecretStr("pw"))
    options = connect_options("nats://h:4222", creds)
    assert options == {"inbox_prefix": "_INBOX_trainer", "user": "trainer", "password": "pw"}
    assert connect_options("nats://ops:pw@h:4222", None) == {"inbox_prefix": "_INBOX"}


def test_the_cli_url_carries_the_identity_and_is_shown_masked():
    creds = BusCredentials("ops", SecretStr("s3cret-Pw_1"))
    url = nats_url_as("nats://a:4222,nats://b:4222", creds)
    assert url == "nats://ops:s3cret-Pw_1@a:4222,nats://ops:s3cret-Pw_1@b:4222"
    assert mask_nats_url(url) == "nats://ops:***@a:4222,nats://ops:***@b:4222"
    assert nats_url_as("nats://a:4222", None) == "nats://a:4222"
    with pytest.raises(typer.Exit):
        nats_url_as("nats://a:4222", BusCredentials("ops", SecretStr("has/slash@")))
