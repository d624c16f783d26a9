// Config for the local test chain started by scripts/components/components.sh.
// Hardhat 2 takes a CommonJS config; everything here only pins what tests rely on.
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      // Tests wait for receipts right after sending: every transaction must be mined at once.
      mining: { auto: true, interval: 0 },
      // The well-known "test test ... junk" mnemonic; 20 accounts funded with 10,000 ETH each.
      accounts: { count: 20, accountsBalance: "10000000000000000000000" },
    },
  },
};
