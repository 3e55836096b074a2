pub async fn run(_l: Option<std::net::SocketAddr>, _t: bool) -> anyhow::Result<()> {
    Ok(())
}
