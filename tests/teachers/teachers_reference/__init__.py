"""Independent re-implementations of the original teacher code, for parity tests.

Written from the public source of each project (fairseq data2vec 2.0, unilm
BEiTv2, facebookresearch/dino) with their module and parameter names, so that
``state_dict()`` yields the checkpoint layout the original code saves. They
share no code with ``mmthesis.teachers``: a converter bug or an architecture
mismatch shows up as a key error or an output difference.
"""
