"""The scheduler: event-sourced schedules that send tasks to agents, each slot fired exactly once."""
