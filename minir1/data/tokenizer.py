"""A character-level tokenizer with the special tokens of the R1 format.

Every printable ASCII character is one token; the tags ``<think>``, ``</think>``, ``<answer>``,
``</answer>`` and the control tokens ``<bos>``, ``<eos>``, ``<pad>`` are single tokens of their own,
so a model writes a whole tag in one step. The characters ``<``, ``/`` and ``>`` are in the alphabet
too, so a model *can* spell a tag character by character; ``encode`` maps any literal tag back to
its single token, which is why the reward parsers work on decoded text rather than on token ids.
Characters outside the alphabet raise a ``ValueError`` that names them: silently mapping them to an
"unknown" token would let a reward parser see text the model never wrote. The vocabulary is saved
with every checkpoint as JSON.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

from minir1.data.tags import BOS, EOS, PAD, SPECIALS

CHARS = "\n" + " " + string.digits + string.ascii_letters + string.punctuation


class Tokenizer:
    """Character-level tokenizer; ``vocab_size`` is 103 with the default alphabet (7 specials and 96
    characters)."""

    def __init__(self, chars: str = CHARS, specials: tuple[str, ...] = SPECIALS) -> None:
        if len(set(chars)) != len(chars):
            raise ValueError("Tokenizer chars must not repeat")
        self.specials = tuple(specials)
        self.chars = chars
        self.itos = list(self.specials) + list(chars)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        by_length = sorted(specials, key=len, reverse=True)  # longest first: "</think>" before "<"
        self._split = re.compile("(" + "|".join(re.escape(s) for s in by_length) + ")")

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def pad_id(self) -> int:
        return self.stoi[PAD]

    @property
    def bos_id(self) -> int:
        return self.stoi[BOS]

    @property
    def eos_id(self) -> int:
        return self.stoi[EOS]

    def token_id(self, token: str) -> int:
        """The id of one special token or character."""
        try:
            return self.stoi[token]
        except KeyError:
            raise ValueError(f"{token!r} is not in the tokenizer vocabulary") from None

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Text -> ids. Special tokens written literally (``<think>``) become their single id."""
        ids = [self.bos_id] if bos else []
        start = 0  # offset of the current piece in ``text``, so errors point at the right character
        for piece in self._split.split(text):
            if piece in self.specials:
                ids.append(self.stoi[piece])
            else:
                for i, ch in enumerate(piece):
                    tid = self.stoi.get(ch)
                    if tid is None or ch in self.specials:
                        pos = start + i
                        near = text[max(0, pos - 20):pos + 20]
                        raise ValueError(f"character {ch!r} (U+{ord(ch):04X}) at position {pos} of "
                                         f"the text (near {near!r}) is not in the "
                                         "tokenizer alphabet")
                    ids.append(tid)
            start += len(piece)
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: list[int] | tuple[int, ...], skip_control: bool = True) -> str:
        """Ids -> text; ``<pad>``, ``<bos>`` and ``<eos>`` are dropped
        unless ``skip_control=False``."""
        control = {self.pad_id, self.bos_id, self.eos_id} if skip_control else set()
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
            if i not in control:
                out.append(self.itos[i])
        return "".join(out)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, object]:
        return {"type": "char", "chars": self.chars, "specials": list(self.specials)}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Tokenizer:
        if d.get("type") != "char":
            raise ValueError(f"unknown tokenizer type {d.get('type')!r}")
        return cls(chars=str(d["chars"]), specials=tuple(d["specials"]))  # type: ignore[arg-type]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no tokenizer file")
        return cls.from_dict(json.loads(path.read_text()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"
