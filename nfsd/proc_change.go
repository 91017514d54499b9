package nfsd

func (k *nfsReq) setattr() bool { return false }
func (k *nfsReq) write() bool   { return false }
func (k *nfsReq) create() bool  { return false }
func (k *nfsReq) remove() bool  { return false }
func (k *nfsReq) rename() bool  { return false }
func (k *nfsReq) link() bool    { return false }
