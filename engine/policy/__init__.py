"""Pure decisions on whether an automatic run may start: gates `(request, history, now) -> decision`,
chained in `chain`; no SQL, no I/O, no clock of their own."""
