"""Pure decisions on whether an automatic run may start: no SQL, no I/O."""
