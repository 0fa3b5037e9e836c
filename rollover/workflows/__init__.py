"""What an operator asks for beside a rollover: publishing a set, the next key, renewals,
verification. Each composes the core, the edges and, where it starts a rollover, the engine."""
