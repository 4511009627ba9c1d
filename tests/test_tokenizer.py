import pytest
from hypothesis import given
from hypothesis import strategies as st

from minir1.data.tokenizer import CHARS, SPECIALS, Tokenizer

tok = Tokenizer()


def test_vocab_fits_the_tiny_model():
    assert tok.vocab_size == len(SPECIALS) + len(CHARS) <= 128


def test_special_tokens_are_single_ids():
    ids = tok.encode("<think>1+2</think><answer>3</answer>", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert ids[1] == tok.token_id("<think>") and len(ids) == 2 + 1 + 3 + 1 + 1 + 1 + 1
    assert tok.decode(ids) == "<think>1+2</think><answer>3</answer>"


@given(st.text(alphabet=CHARS))
def test_round_trip(text):
    assert tok.decode(tok.encode(text)) == text


def test_unknown_character_is_named():
    with pytest.raises(ValueError, match=r"'é'.*U\+00E9"):
        tok.encode("café")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_save_and_load(tmp_path):
    tok.save(tmp_path / "tokenizer.json")
    assert Tokenizer.load(tmp_path / "tokenizer.json") == tok
    with pytest.raises(FileNotFoundError):
        Tokenizer.load(tmp_path / "missing.json")
