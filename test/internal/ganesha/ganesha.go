// Package ganesha writes the nfs-ganesha configuration the benchmarks
// measure pictl's nfsd against, so every benchmark runs the same server.
package ganesha

import "fmt"

// Config is nfs-ganesha with the VFS FSAL and NFSv3 over TCP only, one
// read-write export without root squashing; no NLM (clients mount nolock),
// rquota, krb5 or grace period.
func Config(nfsPort, mountPort int, path, pseudo string) string {
	return fmt.Sprintf(`NFS_CORE_PARAM {
	NFS_Port = %d;
	MNT_Port = %d;
	Protocols = 3;
	Enable_NLM = false;
	Enable_RQUOTA = false;
}
NFSV4 { Graceless = true; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
	Export_Id = 1;
	Path = %s;
	Pseudo = %s;
	Access_Type = RW;
	Squash = No_Root_Squash;
	Protocols = 3;
	Transports = TCP;
	SecType = sys;
	FSAL { Name = VFS; }
}
LOG { Default_Log_Level = WARN; }
`, nfsPort, mountPort, path, pseudo)
}
