"""The R1 output format's tags, spelled once for the tokenizer, templates, rewards and evaluation.

R1-Zero's template asks for "the reasoning process and answer ... enclosed within <think> </think>
and <answer> </answer> tags" (R1 Table 1). The tokenizer makes each tag a single token, the
templates write them, the rule rewards parse them (R1 §2.2.2) and the evaluation forces or
checks them.
"""

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"  # control tokens, never part of decoded text
SPECIALS = (PAD, BOS, EOS, THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)  # tokenizer id order
CHECK_MARK = "check "  # how a worked solution writes its self-check step (``check 936-589=347``)

__all__ = ["ANSWER_CLOSE", "ANSWER_OPEN", "BOS", "CHECK_MARK", "EOS", "PAD", "SPECIALS",
           "THINK_CLOSE", "THINK_OPEN"]
