package proxy

// SetInFlightBudget sets the bytes of upstream answers s holds in memory at
// once, for the tests of the 503 answered beyond it.
func SetInFlightBudget(s *Server, n int64) { s.inflight.setMax(n) }
