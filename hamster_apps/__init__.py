"""The command-line applications and orchestration: the node graph description (shared with the launch files),
the process runner (hamster-run), the end-to-end demo (hamster-demo), and the plan/perceive/train/evaluate CLIs."""
