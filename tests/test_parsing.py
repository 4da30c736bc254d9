"""parsing.coerce is the one coercion of setting values: search, retrain and ablate word a bad value alike."""
import pytest

from nni_offpolicy.tools.ablate import parse_seeds
from nni_offpolicy.errors import UserError
from nni_offpolicy.parsing import coerce
from nni_offpolicy.retrain import coerce_overrides
from nni_offpolicy.settings import load_settings


@pytest.mark.parametrize("value,hint,want", [
    ("600.0", int, 600), (600.0, int, 600), ("0.5", float, 0.5), ("on", bool, True), (0, bool, False),
    ("none", int | None, None), ("", str | None, None), ("5,11, 17", list[int], [5, 11, 17]),
    (3, list[float], [3.0]), (7, str, "7"),
])
def test_coerce_turns_text_and_tuner_numbers_into_the_field_type(value, hint, want):
    got = coerce("x", value, hint)
    assert got == want and type(got) is type(want)


def test_search_retrain_and_ablate_word_a_bad_integer_the_same():
    errors = []
    for call in (lambda: load_settings("demo", {"batch_size": "1.5"}),
                 lambda: load_settings("demo", {"layers": "3,x,5"}),
                 lambda: coerce_overrides({"epochs": "1.5"}, "--retrain-set"),
                 lambda: parse_seeds("0,1.5")):
        with pytest.raises(UserError) as info:
            call()
        errors.append(str(info.value))
    assert errors == ["batch_size: expected an integer, got '1.5'", "layers: expected an integer, got 'x'",
                      "--retrain-set epochs: expected an integer, got '1.5'",
                      "--seeds: expected an integer, got '1.5'"]


def test_optional_settings_take_none_and_bad_booleans_are_named():
    assert load_settings("demo", {"max_steps_per_epoch": "none", "zero_cost": "none"}).max_steps_per_epoch is None
    with pytest.raises(UserError, match="download: expected true/false, got 'maybe'"):
        load_settings("demo", {"download": "maybe"})
    with pytest.raises(UserError, match="--retrain-set auxiliary: expected true/false, got 'maybe'"):
        coerce_overrides({"auxiliary": "maybe"}, "--retrain-set")
