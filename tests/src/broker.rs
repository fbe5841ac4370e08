//! Tier: privileged + broker (docs/testing.md). Helpers for queue mode's tests: the RabbitMQ
//! broker on 127.0.0.1:5672 (`cargo xtask test` installs and starts it), a vhost of its own per
//! test (created and deleted with `rabbitmqctl`), a node of its own for the tests that restart a
//! broker (own port, data directory and cookie; the shared node is never restarted), and an AMQP
//! client (lapin) that publishes submissions and reads results, events and dead letters.

use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_core::Stream;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

/// The shared broker's AMQP port.
pub const AMQP_PORT: u16 = 5672;

/// Whether queue tests can run here: root (rabbitmqctl), and a broker answering on
/// 127.0.0.1:5672. Otherwise prints `skipped: …` and returns false, or fails under
/// `RUNNER_REQUIRE_ALL`.
pub fn broker() -> bool {
    if !crate::privileged() {
        return false;
    }
    let up = std::net::TcpStream::connect_timeout(
        &format!("127.0.0.1:{AMQP_PORT}").parse().expect("addr"),
        Duration::from_millis(500),
    )
    .is_ok();
    if !up {
        let why =
            "no RabbitMQ broker on 127.0.0.1:5672 (`cargo xtask test` installs and starts one)";
        if std::env::var_os("RUNNER_REQUIRE_ALL").is_some() {
            panic!("{why} (RUNNER_REQUIRE_ALL is set)");
        }
        eprintln!("skipped: {why}");
        return false;
    }
    true
}

/// `rabbitmqctl` for the shared node (through Debian's wrapper, as the `rabbitmq` user) or for a
/// node of our own (as root, with that node's cookie).
#[derive(Debug, Clone)]
pub struct Ctl {
    own: Option<(String, PathBuf)>,
}

impl Ctl {
    pub fn shared() -> Ctl {
        Ctl { own: None }
    }

    /// Runs `rabbitmqctl args`, bounded by 60 s; panics with its output on failure.
    pub fn run(&self, args: &[&str]) -> String {
        self.try_run(args)
            .unwrap_or_else(|e| panic!("rabbitmqctl {args:?}: {e}"))
    }

    pub fn try_run(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = match &self.own {
            None => Command::new("rabbitmqctl"),
            Some((node, home)) => {
                let mut c = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl");
                c.env("HOME", home).args(["-n", node]);
                c
            }
        };
        cmd.args(["-q", "--timeout", "60"])
            .args(args)
            .stdin(Stdio::null());
        let out = cmd.output().map_err(|e| format!("cannot run: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A vhost of one test, with `guest` allowed everything in it; deleted on drop (with all its
/// queues and exchanges).
pub struct Vhost {
    pub name: String,
    pub port: u16,
    ctl: Ctl,
}

static VHOSTS: AtomicU32 = AtomicU32::new(0);

impl Vhost {
    /// A new vhost on the shared broker. `tag` names the test (it shows in `rabbitmqctl`).
    pub fn new(tag: &str) -> Vhost {
        Vhost::on(Ctl::shared(), AMQP_PORT, tag)
    }

    fn on(ctl: Ctl, port: u16, tag: &str) -> Vhost {
        let n = VHOSTS.fetch_add(1, Ordering::Relaxed);
        let name = format!("runner-test-{tag}-{}-{n}", std::process::id());
        let _ = ctl.try_run(&["delete_vhost", &name]);
        ctl.run(&["add_vhost", &name]);
        ctl.run(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost { name, port, ctl }
    }

    /// The AMQP URL of this vhost (user guest, which the broker lets in from localhost only).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/{}", self.port, self.name)
    }

    /// Unacknowledged messages over every channel of the vhost, as the broker counts them (a
    /// live count of each channel).
    pub fn unacked(&self) -> u64 {
        let out = self.ctl.run(&[
            "list_channels",
            "--no-table-headers",
            "vhost",
            "messages_unacknowledged",
        ]);
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 2 && f[0] == self.name).then(|| f[1].parse::<u64>().unwrap_or(0))
            })
            .sum()
    }

    /// The consumers of `queue` (their tags).
    pub fn consumers(&self, queue: &str) -> Vec<String> {
        let out = self.ctl.run(&[
            "list_consumers",
            "-p",
            &self.name,
            "--no-table-headers",
            "queue_name",
            "consumer_tag",
        ]);
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 2 && f[0] == queue).then(|| f[1].to_owned())
            })
            .collect()
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = self.ctl.try_run(&["delete_vhost", &self.name]);
    }
}

/// A RabbitMQ node of one test (for restarts): its own node name, AMQP and distribution ports,
/// data directory and Erlang cookie, run as root from Debian's scripts. Stopped and removed on
/// drop.
pub struct Node {
    pub name: String,
    pub port: u16,
    dir: PathBuf,
    ctl: Ctl,
}

impl Node {
    /// Starts a node and waits until it accepts AMQP connections (bounded: 120 s).
    pub fn start() -> Node {
        Node::start_on(crate::daemon::free_port())
    }

    /// As [`start`](Self::start), on AMQP port `port`.
    pub fn start_on(port: u16) -> Node {
        let n = VHOSTS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("runner-rabbit-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("node dir");
        let cookie = dir.join(".erlang.cookie");
        std::fs::write(&cookie, format!("RUNNERTEST{}X{n}", std::process::id())).expect("cookie");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins file");
        let name = format!("runner-test-{}-{n}@localhost", std::process::id());
        let node = Node {
            ctl: Ctl {
                own: Some((name.clone(), dir.clone())),
            },
            name,
            port,
            dir,
        };
        node.boot();
        node
    }

    fn boot(&self) {
        let dist = crate::daemon::free_port();
        let st = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .arg("-detached")
            .env("HOME", &self.dir)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq"))
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                self.dir.join("advanced.config"),
            )
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("rabbitmq-server");
        assert!(st.success(), "rabbitmq-server -detached: {st}");
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "node {} did not listen on {} within 120 s",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.ctl.run(&["await_startup"]);
    }

    /// A vhost on this node.
    pub fn vhost(&self, tag: &str) -> Vhost {
        Vhost::on(self.ctl.clone(), self.port, tag)
    }

    /// Stops the node (as a crash would look to clients: connections drop) and starts it again
    /// on the same data: durable quorum queues come back with their messages.
    pub fn restart(&self) {
        self.ctl.run(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "node did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.boot();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.ctl.try_run(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A test's own AMQP client: one connection, one channel in confirm mode.
pub struct Client {
    pub conn: Connection,
    pub ch: Channel,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(Default::default())
            .await
            .expect("confirms");
        Client { conn, ch }
    }

    /// Declares the exchanges queue mode uses (as a runner would), so that a test can bind and
    /// publish before any runner connected.
    pub async fn declare_exchanges(&self) {
        for (name, kind) in [
            ("runner.judge", ExchangeKind::Direct),
            ("runner.results", ExchangeKind::Topic),
            ("runner.events", ExchangeKind::Topic),
            ("runner.dead", ExchangeKind::Fanout),
        ] {
            self.ch
                .exchange_declare(
                    name.into(),
                    kind,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("exchange");
        }
    }

    /// A durable queue `name` bound to `exchange` with `key` (`args`: extra queue arguments).
    pub async fn bind_queue(&self, name: &str, exchange: &str, key: &str, args: FieldTable) {
        self.ch
            .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
            .await
            .expect("queue");
        self.ch
            .queue_bind(
                name.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
    }

    /// Publishes `body` to `runner.judge` with `key`, persistent, and waits for the confirm.
    pub async fn submit(&self, key: &str, body: &[u8], props: BasicProperties) {
        self.publish("runner.judge", key, body, props).await;
    }

    pub async fn publish(&self, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
        let c = self
            .ch
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                props.with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(c.is_ack(), "the broker took the submission");
    }

    /// Ready messages in `queue`, from a passive declare (live; `rabbitmqctl list_queues`
    /// reports a quorum queue's counts with a delay). Panics if the queue does not exist.
    pub async fn ready(&self, queue: &str) -> u64 {
        let ch = self.conn.create_channel().await.expect("channel");
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("queue {queue}: {e}"));
        let _ = ch.close(200, "".into()).await;
        u64::from(q.message_count())
    }

    /// Consumes `queue` (auto-ack off, acked here as they come).
    pub async fn consume(&self, queue: &str) -> Reader {
        let ch = self.conn.create_channel().await.expect("channel");
        let consumer = ch
            .basic_consume(
                queue.into(),
                ShortString::from(format!("test-{queue}")),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        Reader { _ch: ch, consumer }
    }
}

/// A consumer of the test: reads messages with a deadline.
pub struct Reader {
    _ch: Channel,
    consumer: Consumer,
}

impl Reader {
    /// The next message within `within`, acked; `None` on timeout.
    pub async fn next(&mut self, within: Duration) -> Option<Delivery> {
        let c = &mut self.consumer;
        let next = std::future::poll_fn(|cx| Pin::new(&mut *c).poll_next(cx));
        match tokio::time::timeout(within, next).await {
            Ok(Some(Ok(d))) => {
                d.ack(BasicAckOptions::default()).await.expect("ack");
                Some(d)
            }
            Ok(Some(Err(e))) => panic!("consumer failed: {e}"),
            Ok(None) | Err(_) => None,
        }
    }

    /// `n` messages, each within `within` of the previous one; panics naming how many came.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.next(within).await {
                Some(d) => out.push(d),
                None => panic!(
                    "got {} of {n} messages, then nothing for {within:?}",
                    out.len()
                ),
            }
        }
        out
    }
}

/// A message's `message_id`.
pub fn message_id(d: &Delivery) -> String {
    d.properties
        .message_id()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// A message's body as JSON.
pub fn json(d: &Delivery) -> serde_json::Value {
    serde_json::from_slice(&d.data)
        .unwrap_or_else(|e| panic!("{:?} is not JSON: {e}", String::from_utf8_lossy(&d.data)))
}

/// Queue arguments `{key: long string value}` (e.g. `x-overflow`), and integers.
pub fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}
