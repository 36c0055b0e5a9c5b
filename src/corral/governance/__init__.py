"""The deterministic governance kernel: effects, phases, rules, budget, approvals, transactions, traces."""
