package ledgerclient

// WaitStarted waits until the lookups StartRevocations began are done,
// without taking their answer: tests log entries after it.
func WaitStarted(p *PendingRevocations) { <-p.done }

// StartedDone reports, without waiting, whether the lookups
// StartRevocations began are over.
func StartedDone(p *PendingRevocations) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
