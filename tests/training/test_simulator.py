"""The simulated world: deterministic, contract-valid, labelled, and with no label in an identifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from features.contracts import Cdr, Subscriber, decode
from features.numbering import NumberClass, classify
from features.offline import read_cdrs, read_subscribers
from training.simulator import simulate


def test_same_seed_writes_the_same_world(small_world: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    simulate(again, seed=3, subscribers=2000, days=6, progress=False)
    for rel in ("subscribers.parquet", "labels/calls.parquet", "labels/numbers.parquet"):
        assert pq.read_table(small_world / rel).equals(pq.read_table(again / rel)), rel
    assert read_cdrs(small_world / "cdrs").equals(read_cdrs(again / "cdrs"))
    assert (small_world / "allowlist.csv").read_text() == (again / "allowlist.csv").read_text()


def test_another_seed_writes_another_world(small_world: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    simulate(other, seed=4, subscribers=2000, days=2, progress=False)
    assert not read_subscribers(other / "subscribers.parquet")["msisdn"].equals(
        read_subscribers(small_world / "subscribers.parquet")["msisdn"]
    )


def test_every_record_decodes_with_the_contracts(small_world: Path) -> None:
    n_cdr = 0
    with open(small_world / "cdrs.jsonl", "rb") as f:
        for line in f:
            cdr = decode(Cdr, line)
            n_cdr += 1
            if cdr.answered is False:
                assert cdr.duration_s == 0
            if cdr.a_imei is not None:
                assert cdr.ingress == "mobile" and cdr.a_cell_id is not None
    with open(small_world / "subscribers.jsonl", "rb") as f:
        n_sub = sum(1 for line in f if decode(Subscriber, line))
    manifest = json.loads((small_world / "manifest.json").read_text())
    assert n_cdr == manifest["counts"]["calls"] == read_cdrs(small_world / "cdrs").num_rows
    assert n_sub == manifest["counts"]["subscribers"]


def test_labels_align_with_calls(small_world: Path) -> None:
    cdrs = read_cdrs(small_world / "cdrs")
    labels = pq.read_table(small_world / "labels" / "calls.parquet")
    assert labels.num_rows == cdrs.num_rows
    keys = pc.binary_join_element_wise(cdrs["operator"], cdrs["call_id"], ":")
    lkeys = pc.binary_join_element_wise(labels["operator"], labels["call_id"], ":")
    assert pc.count_distinct(keys).as_py() == cdrs.num_rows  # (operator, call_id) is unique
    assert pc.all(pc.is_in(keys, value_set=lkeys)).as_py()
    typ = labels["typology"].to_numpy(zero_copy_only=False)
    fraud = labels["is_fraud"].to_numpy(zero_copy_only=False)
    assert set(typ[fraud]) == {"spoofing", "vishing", "simbox", "wangiri", "robocall"}
    assert set(typ[~fraud]) == {"legit"}
    groups = set(labels["group"].to_pylist())
    assert {"courier", "taxi", "call_centre", "service", "elderly", "roamer", "relative_abroad", "business",
            "new_subscriber", "normal", "fraud"} <= groups
    numbers = pq.read_table(small_world / "labels" / "numbers.parquet")
    fraud_callers = set(cdrs["a_number"].filter(labels["is_fraud"]).to_pylist())
    assert fraud_callers == set(numbers["number"].filter(numbers["is_fraud"]).to_pylist())


def test_world_has_the_promised_structure(small_world: Path) -> None:
    cdrs = read_cdrs(small_world / "cdrs")
    subs = read_subscribers(small_world / "subscribers.parquet")
    manifest = json.loads((small_world / "manifest.json").read_text())
    assert set(cdrs["operator"].to_pylist()) == {"kcell", "beeline", "tele2"}
    assert set(cdrs["ingress"].to_pylist()) == {"mobile", "fixed", "international", "voip"}
    assert subs["roaming_country"].null_count < subs.num_rows  # roamers exist
    assert all(classify(n) is NumberClass.KZ_FIXED for n in manifest["bank_hotlines"])
    allow = (small_world / "allowlist.csv").read_text().splitlines()
    assert allow[0] == "msisdn,operator,reason" and len(allow) == 10


def test_identifiers_do_not_encode_the_label(small_world: Path) -> None:
    cdrs = read_cdrs(small_world / "cdrs")
    fraud = pq.read_table(small_world / "labels" / "calls.parquet")["is_fraud"].to_numpy(zero_copy_only=False)
    # The fraud share must not depend on a call_id's leading hex digit or a number's range.
    lead = np.array([c[0] for c in cdrs["call_id"].to_pylist()])
    shares = [fraud[lead == d].mean() for d in "0123456789abcdef"]
    assert max(shares) - min(shares) < 0.05
    assert all(len(c) == 16 for c in cdrs["call_id"].slice(0, 100).to_pylist())
    # Fraud SIMs come from the same ranges as everybody's: compare ranges number by number.
    numbers = pq.read_table(small_world / "labels" / "numbers.parquet")
    num = np.array(numbers["number"].to_pylist())
    bad = numbers["is_fraud"].to_numpy(zero_copy_only=False)
    mobile = np.array([classify(n) is NumberClass.KZ_MOBILE for n in num])
    abc = np.array([n[2:5] for n in num])
    assert set(abc[mobile & bad]) <= set(abc[mobile & ~bad])
    overall = bad[mobile].mean()
    for code in set(abc[mobile]):
        m = mobile & (abc == code)
        assert bad[m].mean() < 3 * overall + 0.02, code
    imei = cdrs["a_imei"].to_numpy(zero_copy_only=False)
    has = np.array([x is not None for x in imei])
    tac_len = {len(x) for x in imei[has]}
    assert tac_len == {15}


@pytest.mark.parametrize("subscribers", [999])
def test_simulate_refuses_tiny_worlds_via_cli(subscribers: int, tmp_path: Path) -> None:
    from deploy.cli import main

    assert main(["simulate", "--out", str(tmp_path / "x"), "--subscribers", str(subscribers)]) == 2
