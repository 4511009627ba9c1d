"""``minir1.rl.rewards``: kept importable for code written before the rule rewards moved to
``minir1.data.rewards``, next to the tasks they verify (R1 §2.2.2). New code imports from there."""

from minir1.data.rewards import accuracy_reward, extract_answer, format_reward, parse_integer

__all__ = ["accuracy_reward", "extract_answer", "format_reward", "parse_integer"]
