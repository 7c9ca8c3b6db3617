package results

// ExecutionStatusSQL is the SQL expression of an execution's status as the
// API shows it (see executionStatus); its one argument is now, in stored
// form. Other read-only services count by it.
const ExecutionStatusSQL = executionStatus
