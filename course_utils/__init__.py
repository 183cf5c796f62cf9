"""Plumbing for the self-supervised learning notebooks.

One module a job: `data` (datasets and loaders), `augment` (batched SimCLR
views), `models` (encoders and heads), `training` (the loop), `evaluation`
(linear probe, kNN, embeddings), `plots` (pictures), `checks` (relative
error, timing, seeding, device), `distributed` (several processes: MoCo's
shuffling BN, SimCLR's negatives gathered across processes, `spawn`);
per notebook: `pretext` (01: pre-training scenes, jitter, the networks and
steps of RotNet, patch location and jigsaw), `generative` (02: Lab colour, ab bins,
masks, the encoder-decoder and the dense embedding, their steps), `moco` (04),
`cpc` (05); for students around the notebooks: `submit` (the command and
last cell of the submission helper and its self-check; it forwards to
``autograder.frontends.submit`` from inside its functions, the only import
of ``autograder`` here, since this package is copied next to student code
when it is graded) and `colab` (the notebooks' first cell);
`release` and `notebook_runner` for the kit itself.
"""
