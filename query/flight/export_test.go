package flight

// RunningQueries counts the queries s runs now.
func RunningQueries(s *Server) int {
	s.running.mu.Lock()
	defer s.running.mu.Unlock()
	return len(s.running.running)
}
