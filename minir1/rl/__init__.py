"""Reinforcement learning: rule rewards now; GRPO and the R1 pipeline next."""
