"""Data: synthetic corpora now; reasoning tasks, tokenizer and templates with the training pipeline."""

from minir1.data.synthetic import markov_corpus, random_batches

__all__ = ["markov_corpus", "random_batches"]
