"""pacslab."""
