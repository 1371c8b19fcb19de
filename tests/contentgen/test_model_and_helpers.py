"""The pure parts: the language model, sampling, stop sequences, text, the breaker, codegen."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from contentgen_service.backends.ngram.model import UNKNOWN, train
from contentgen_service.backends.ngram.text import EOS, detokenize, tokenize
from contentgen_service.breaker import BreakerState, CircuitBreaker, CircuitOpen
from contentgen_service.generation import StopSequenceFilter
from contentgen_service.sampling import sample_index, seed_from_request_id

TINY_CORPUS = [
    ["the", "cat", "sat", "on", "the", "mat", "."],
    ["the", "dog", "sat", "on", "the", "log", "."],
    ["a", "cat", "saw", "the", "dog", "."],
    ["the", "cat", "ate", "."],
]


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("context_words", [["the"], ["sat", "on", "the"], ["never", "seen"], []])
def test_kneser_ney_probabilities_over_the_vocabulary_sum_to_one(order, context_words):
    model = train(TINY_CORPUS, order=order)
    context = model.context_for(context_words)

    total = sum(model.probability(word, context) for word in range(len(model.vocabulary)))

    assert total == pytest.approx(1.0)


def test_a_seen_continuation_is_more_likely_than_an_unseen_one():
    model = train(TINY_CORPUS, order=3)
    context = model.context_for(["sat", "on"])

    assert model.probability(model.word_id("the"), context) > 0.5
    assert model.probability(model.word_id("dog"), context) < model.probability(model.word_id("the"), context)


def test_an_unseen_context_backs_off_to_the_shorter_one():
    model = train(TINY_CORPUS, order=3)
    sat = model.word_id("sat")

    assert model.word_id("zebra") == model.word_id("giraffe") == UNKNOWN
    after_zebra_cat = model.probability(sat, model.context_for(["zebra", "cat"]))
    assert after_zebra_cat == model.probability(sat, model.context_for(["giraffe", "cat"]))
    assert after_zebra_cat > 0
    assert after_zebra_cat != model.probability(sat, model.context_for(["the", "cat"]))


def test_word_lookup_falls_back_to_other_capitalizations():
    model = train([["Return", "the", "value"]], order=2)

    assert model.word_id("return") == model.word_id("Return") != UNKNOWN
    assert model.word_id("THE") == model.word_id("the") != UNKNOWN


def test_sampling_at_temperature_zero_picks_the_most_probable_outcome():
    rng = random.Random(0)

    picks = {sample_index([0.2, 0.5, 0.3], temperature=0.0, top_p=1.0, rng=rng) for _ in range(20)}

    assert picks == {1}


def test_a_small_top_p_keeps_only_the_most_probable_outcomes():
    rng = random.Random(0)

    picks = {sample_index([0.1, 0.6, 0.25, 0.05], temperature=1.0, top_p=0.7, rng=rng) for _ in range(200)}

    assert picks == {1, 2}


def test_sampling_with_the_same_seed_repeats_and_follows_the_distribution():
    weights = [0.7, 0.2, 0.1]
    first = [sample_index(weights, temperature=1.0, top_p=1.0, rng=random.Random(5)) for _ in range(50)]
    again = [sample_index(weights, temperature=1.0, top_p=1.0, rng=random.Random(5)) for _ in range(50)]
    rng = random.Random(1)
    counts = [0, 0, 0]
    for _ in range(3000):
        counts[sample_index(weights, temperature=1.0, top_p=1.0, rng=rng)] += 1

    assert first == again
    assert counts[0] > counts[1] > counts[2] > 0


def test_a_low_temperature_sharpens_the_distribution():
    rng = random.Random(2)
    cold = sum(sample_index([0.6, 0.4], temperature=0.2, top_p=1.0, rng=rng) == 0 for _ in range(1000))
    hot = sum(sample_index([0.6, 0.4], temperature=1.0, top_p=1.0, rng=rng) == 0 for _ in range(1000))

    assert cold > hot


def test_seeds_derived_from_request_ids_are_stable_and_distinct():
    assert seed_from_request_id("job-1") == seed_from_request_id("job-1")
    assert seed_from_request_id("job-1") != seed_from_request_id("job-2")
    assert 0 <= seed_from_request_id("job-1") < 2**64


def test_the_stop_filter_holds_back_a_possible_start_of_a_stop_sequence():
    stops = StopSequenceFilter(("END",))

    assert stops.feed("hello E") == ("hello ", False)
    assert stops.feed("N") == ("", False)
    assert stops.feed("X more") == ("ENX more", False)
    assert stops.feed(" then EN") == (" then ", False)
    assert stops.feed("D and after") == ("", True)


def test_the_stop_filter_cuts_at_the_earliest_of_several_stop_sequences():
    stops = StopSequenceFilter(("b", "xyz"))

    assert stops.feed("a xyz b") == ("a ", True)


def test_held_back_text_is_released_at_the_end():
    stops = StopSequenceFilter(("!!",))

    assert stops.feed("wow!") == ("wow", False)
    assert stops.flush() == "!"


def test_detokenizing_puts_punctuation_back_against_words():
    text = 'Return the value of os.path.join(a, b), e.g. "foo" or (bar); done.'

    assert detokenize(tokenize(text)) == text


def test_the_end_of_a_paragraph_becomes_a_blank_line():
    assert detokenize(["One", ".", EOS, "Two", "."]) == "One.\n\nTwo."


def test_the_breaker_opens_after_consecutive_failures_and_half_opens_after_the_cool_down():
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, reset_seconds=10.0, clock=lambda: now[0])
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    breaker.before_call()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()

    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as error:
        breaker.before_call()
    assert error.value.retry_after == pytest.approx(10.0)

    now[0] = 10.5
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the one trial call
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # others still fail fast while it runs
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN

    now[0] = 21.0
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_an_abandoned_trial_lets_the_next_call_try():
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, reset_seconds=1.0, clock=lambda: now[0])
    breaker.before_call()
    breaker.record_failure()
    now[0] = 2.0
    breaker.before_call()

    breaker.record_abandoned()

    breaker.before_call()  # does not raise


def test_the_committed_generated_code_matches_the_proto():
    result = subprocess.run(
        [sys.executable, "-m", "contentgen_service.codegen", "--check"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr


def test_the_service_package_never_imports_django():
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, pkgutil, importlib, contentgen_service\n"
        "for m in pkgutil.walk_packages(contentgen_service.__path__, 'contentgen_service.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n == 'django' or n.startswith('django.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
