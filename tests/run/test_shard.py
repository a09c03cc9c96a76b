"""`run --shard I/N` partitions a selection: the union is everything, no two overlap."""

from __future__ import annotations

import pytest

from audit.errors import UserError
from audit.run.run_command import parse_shard, shard_of
from audit.scenarios import registry


@pytest.mark.parametrize("count", [1, 2, 3, 7, 200])
def test_shards_partition_the_builtin_selection(count: int) -> None:
    registry.load_builtin()
    names = [item.name for item in registry.select(None)]
    shards = [shard_of(names, (index, count)) for index in range(1, count + 1)]
    flat = [name for shard in shards for name in shard]
    assert sorted(flat) == sorted(names)  # union is the selection, nothing twice
    assert len(flat) == len(set(flat))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced


def test_a_shard_does_not_depend_on_the_input_order() -> None:
    names = [f"family.s{i}" for i in range(10)]
    assert shard_of(names, (2, 3)) == shard_of(list(reversed(names)), (2, 3))


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "2", "-1/2"])
def test_a_bad_shard_is_a_one_line_error(text: str) -> None:
    with pytest.raises(UserError, match="--shard"):
        parse_shard(text)


def test_a_good_shard_parses() -> None:
    assert parse_shard("2/5") == (2, 5)
