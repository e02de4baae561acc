"""The `ray up` cluster file checker (`mixtune cluster-check`), apart from the search path."""
