package ledgerclient

// WaitStarted waits until the lookups StartRevocations began are done,
// without taking their answer: tests log entries after it.
func WaitStarted(p *PendingRevocations) { <-p.done }
