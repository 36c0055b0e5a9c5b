from corral.store.search import MAX_QUERY_WORDS, query_words


def test_query_words_are_plain_words() -> None:
    assert query_words('NEAR(refund* "policy") AND -x tags:refund') == ["near", "refund", "policy", "and", "tags"]
    assert query_words("alice_smith €uro") == ["alice", "smith", "uro"]
    assert query_words("*\"()^:") == []


def test_a_long_query_keeps_its_first_distinct_words() -> None:
    words = query_words("refund refund " + " ".join(f"w{i}" for i in range(100)))
    assert len(words) == MAX_QUERY_WORDS
    assert words[:3] == ["refund", "w0", "w1"]
