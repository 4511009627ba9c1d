import pytest
from hypothesis import given
from hypothesis import strategies as st

from minir1.data.tokenizer import CHARS, SPECIALS, Tokenizer
from tests.conftest import TOK as tok


def test_vocab_fits_the_tiny_model():
    assert tok.vocab_size == len(SPECIALS) + len(CHARS) <= 128


def test_special_tokens_are_single_ids():
    ids = tok.encode("<think>1+2</think><answer>3</answer>", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert ids[1] == tok.token_id("<think>") and len(ids) == 2 + 1 + 3 + 1 + 1 + 1 + 1
    assert tok.decode(ids) == "<think>1+2</think><answer>3</answer>"


# Mix whole special tokens into arbitrary text so the tag splitter is exercised, not just single
# characters.
_text = st.lists(st.one_of(st.text(alphabet=CHARS, max_size=8),
                           st.sampled_from(SPECIALS))).map("".join)


@given(_text)
def test_round_trip(text):
    assert tok.decode(tok.encode(text), skip_control=False) == text


def test_default_decode_drops_control_tokens():
    assert tok.decode(tok.encode("<bos>1+1<pad><eos>")) == "1+1"
    assert tok.decode(tok.encode("1<p" + "ad>2"), skip_control=False) == "1<pad>2"


def test_unknown_character_is_named():
    with pytest.raises(ValueError, match=r"'é'.*U\+00E9"):
        tok.encode("café")
    # the position counts from the start of the text, not from the last special token
    with pytest.raises(ValueError, match="position 18 "):
        tok.encode("<think>1+2</think>é")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_save_and_load(tmp_path):
    tok.save(tmp_path / "tokenizer.json")
    assert Tokenizer.load(tmp_path / "tokenizer.json") == tok
    with pytest.raises(FileNotFoundError):
        Tokenizer.load(tmp_path / "missing.json")
