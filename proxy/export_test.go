package proxy

// SetDecisionRecording turns the decision record (repositories, time
// buckets, recent decisions, the writer) on or off, for the benchmarks
// that compare the two; off keeps only the verdict and digest counts.
func SetDecisionRecording(s *Server, on bool) {
	s.stats.mu.Lock()
	s.stats.off = !on
	s.stats.mu.Unlock()
}

// Observe records decision d as decide does, for benchmarks that need a
// large record without making every pull.
func Observe(s *Server, d Decision) { s.stats.observe(d) }
