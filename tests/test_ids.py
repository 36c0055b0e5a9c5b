from corral.ids import new_id


def test_ids_are_unique_sortable_and_26_characters():
    ids = [new_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(i) == 26 and set(i) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for i in ids)


def test_an_id_is_its_millisecond_then_its_random_part():
    import time

    from corral.ids import id_parts

    before = time.time_ns() // 1_000_000
    first, second = new_id(), new_id()
    after = time.time_ns() // 1_000_000
    ms1, rand1 = id_parts(first)
    ms2, rand2 = id_parts(second)
    assert before <= ms1 <= ms2 <= after
    assert (ms1, rand1) < (ms2, rand2)  # monotonic: the same millisecond counts the random part up
    assert 0 <= rand1 < 2**80 and 0 <= rand2 < 2**80
    # every character is spelled from the bits: the id of (ms, rand) decodes back to them
    assert first[:10] == second[:10] if ms1 == ms2 else first[:10] < second[:10]
