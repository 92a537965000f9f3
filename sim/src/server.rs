//! Running the stand-in: on a listener you bound (port 0 in tests), in-process or as the `meta-sim`
//! binary, until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::SimConfig;
use crate::routes::routes;
use crate::state::Sim;

/// A stand-in running in this process. Dropping the handle stops it.
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: both META_GRAPH_URL and META_OAUTH_DIALOG_URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The state, to inspect or change directly.
    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the stand-in on `127.0.0.1:0` in the current runtime.
pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Sim::new(config));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, sim.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(SimHandle { addr, sim, stop: Some(stop) })
}

/// Serves the stand-in on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, sim: Arc<Sim>, shutdown: impl Future<Output = ()> + Send + 'static) {
    warp::serve(routes(sim)).incoming(listener).graceful(shutdown).run().await;
}
