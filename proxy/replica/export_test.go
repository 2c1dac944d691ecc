package replica

// SetMaxRecordsPerDigest lowers the bound of a lookup answer for a test,
// and returns its restore.
func SetMaxRecordsPerDigest(n int) (restore func()) {
	old := maxRecordsPerDigest
	maxRecordsPerDigest = n
	return func() { maxRecordsPerDigest = old }
}
