package nfsd

// Open files of read-only layers are shared by every export.
//
// In a boot storm every node reads the same image files. With a cache per
// export each node opened (open, fstat, fcntl, later close) each file
// again: a fifth of the server's CPU in BenchmarkBootStorm. Files of the
// image and role layers live in one cache on the Server instead. Sharing
// changes nothing a client can see: entries are keyed by inode (dev, ino)
// exactly as before, so an open file always reads the object the caller
// just lstat'ed, whichever export asked; nfsd never writes to these layers
// (writes copy up to the node's own layer first, whose files stay in the
// export's own cache, which Reset closes). knfsd shares its readahead state
// per inode across clients the same way.

// maxSharedFDs bounds the shared cache. It must hold a boot working set (a
// few hundred files, read within seconds, in about the same order by every
// node: a smaller cache would evict each file just before the next node
// wants it); idle files close after fdIdle.
const maxSharedFDs = 1024

// fdsFor is the cache for the open files of e's visible object.
func (x *export) fdsFor(t *tree, e *entry) *fdCache {
	switch t.layers[e.layer].kind {
	case kindImage, kindRole:
		return &x.srv.lowerFDs
	}
	return &x.fds
}
