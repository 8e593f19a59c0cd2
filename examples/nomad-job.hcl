# A job whose group joins the CNI network "consul-net" (examples/nomad.conflist, in /opt/cni/config on each
# client). The job's cni args reach every plugin of the conflist as CNI_ARGS (Nomad 1.8.2+):
#   IPAM_POOL picks among the pools the conflist lists; IP asks for a static address of that pool.
job "web" {
  group "frontend" {
    network {
      mode = "cni/consul-net"
      cni {
        args = {
          IPAM_POOL = "web"
          IP        = "10.20.0.50"
        }
      }
    }

    task "server" {
      driver = "docker"
      config {
        image = "nginx:1.27"
      }
    }
  }
}
