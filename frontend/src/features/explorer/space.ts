// The space as an auditor needs it: chain id, RPC URL, contract addresses, custodians. Read from
// GET /api/space/ (public); until a server has that endpoint, from what the portal's page carries.
import { useQuery } from "@tanstack/react-query";
import { createPublicClient, http, type PublicClient } from "viem";
import { boot, type Space } from "../../api";

export async function fetchSpace(): Promise<Space> {
  try {
    const response = await fetch("/api/space/", { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (response.ok) return (await response.json()) as Space;
  } catch {
    // fall back below
  }
  return boot().space;
}

const clients = new Map<string, PublicClient>();

export function chainClient(space: Space): PublicClient {
  const key = `${space.chain_id}:${space.rpc_url}`;
  let client = clients.get(key);
  if (!client) {
    client = createPublicClient({
      chain: {
        id: space.chain_id,
        name: `Redlake ${space.chain_id}`,
        nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
        rpcUrls: { default: { http: [space.rpc_url] } },
      },
      transport: http(space.rpc_url, { batch: true }),
    });
    clients.set(key, client);
  }
  return client;
}

export function useSpace() {
  return useQuery({ queryKey: ["space"], queryFn: fetchSpace, staleTime: 5 * 60_000 });
}
